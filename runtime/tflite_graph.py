"""Read a .tflite file's operator graph: op names, tensor shapes, MAC counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

_BUILTIN_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
# TFLite metadata (tensorflow/lite/schema/metadata_schema.fbs), read where MediaPipe reads it: the vtable
# offsets of ModelMetadata.subgraph_metadata, SubGraphMetadata.input_tensor_metadata,
# TensorMetadata.process_units, ProcessUnit.options_type / options, NormalizationOptions.mean / std.
_METADATA_NAME = b"TFLITE_METADATA"
_SUBGRAPH_METADATA, _INPUT_TENSOR_METADATA, _PROCESS_UNITS = 10, 8, 12
_OPTIONS_TYPE, _OPTIONS, _MEAN, _STD = 4, 6, 4, 6
_NORMALIZATION_OPTIONS = 1


@dataclass(frozen=True)
class OpInfo:
    name: str  # builtin name, or the custom code for CUSTOM ops
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the convolution family (0 for every other op)."""
        if self.name == "CONV_2D":
            _, kh, kw, cin = self.input_shapes[1]
            return int(np.prod(self.output_shapes[0])) * kh * kw * cin
        if self.name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = self.input_shapes[1]
            return int(np.prod(self.output_shapes[0])) * kh * kw
        if self.name == "TRANSPOSE_CONV":  # inputs: output shape, weights (OHWI), data, bias
            cout, kh, kw, _ = self.input_shapes[1]
            return int(np.prod(self.input_shapes[2])) * kh * kw * cout
        if self.name == "Convolution2DTransposeBias":  # MediaPipe's custom op; inputs: data, weights (OHWI), bias
            cout, kh, kw, _ = self.input_shapes[1]
            return int(np.prod(self.input_shapes[0])) * kh * kw * cout
        return 0


def op_name(model: tflite.Model, opcode_index: int) -> str:
    """An operator's name: its builtin name (e.g. CONV_2D), or its custom code for CUSTOM ops.

    The one opcode lookup of the project: the graph reader and the TVM importer both use it.
    """
    code = model.OperatorCodes(opcode_index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return code.CustomCode().decode()
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


class TFLiteGraph:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.subgraph = self.model.Subgraphs(0)

    @classmethod
    def load(cls, path: Path) -> TFLiteGraph:
        return cls(Path(path).read_bytes())

    def _shape(self, index: int) -> tuple[int, ...]:
        if index < 0:
            return ()
        return tuple(int(s) for s in self.subgraph.Tensors(index).ShapeAsNumpy().tolist() or ())

    @cached_property
    def ops(self) -> list[OpInfo]:
        result = []
        for i in range(self.subgraph.OperatorsLength()):
            op = self.subgraph.Operators(i)
            name = op_name(self.model, op.OpcodeIndex())
            ins = tuple(self._shape(int(t)) for t in op.InputsAsNumpy())
            outs = tuple(self._shape(int(t)) for t in op.OutputsAsNumpy())
            result.append(OpInfo(name, ins, outs))
        return result

    def op_counts(self) -> Counter:
        return Counter(op.name for op in self.ops)

    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [self._shape(int(i)) for i in self.subgraph.InputsAsNumpy()]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [self._shape(int(i)) for i in self.subgraph.OutputsAsNumpy()]

    def _type(self, index: int) -> str:
        return _TYPE_NAMES.get(self.subgraph.Tensors(index).Type(), "UNKNOWN").lower()

    @property
    def input_types(self) -> list[str]:
        return [self._type(int(i)) for i in self.subgraph.InputsAsNumpy()]

    @property
    def output_types(self) -> list[str]:
        return [self._type(int(i)) for i in self.subgraph.OutputsAsNumpy()]

    @property
    def output_producers(self) -> list[str]:
        """The operator that writes each output tensor ("" for an output no operator writes)."""
        producers = {}
        for i in range(self.subgraph.OperatorsLength()):
            op = self.subgraph.Operators(i)
            for t in op.OutputsAsNumpy():
                producers[int(t)] = self.ops[i].name
        return [producers.get(int(t), "") for t in self.subgraph.OutputsAsNumpy()]

    def input_normalization(self) -> tuple[float, float] | None:
        """(mean, std) of the first input from the file's TFLite metadata, as MediaPipe reads it; None without."""
        buffer = next((self.model.Metadata(i).Buffer() for i in range(self.model.MetadataLength())
                       if self.model.Metadata(i).Name() == _METADATA_NAME), None)
        if buffer is None:
            return None
        data = self.model.Buffers(buffer).DataAsNumpy()
        if not isinstance(data, np.ndarray) or data.size == 0:
            return None
        buf = bytearray(data.tobytes())
        root = flatbuffers.table.Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
        subgraph = _vector_table(root, _SUBGRAPH_METADATA, 0)
        tensor = subgraph and _vector_table(subgraph, _INPUT_TENSOR_METADATA, 0)
        if tensor is None:
            return None
        for j in range(_vector_length(tensor, _PROCESS_UNITS)):
            unit = _vector_table(tensor, _PROCESS_UNITS, j)
            kind = unit.Offset(_OPTIONS_TYPE)
            if not kind or unit.Get(flatbuffers.number_types.Uint8Flags, kind + unit.Pos) != _NORMALIZATION_OPTIONS:
                continue
            options = flatbuffers.table.Table(buf, 0)
            unit.Union(options, unit.Offset(_OPTIONS))
            mean, std = _float_vector(options, _MEAN), _float_vector(options, _STD)
            if mean and std:
                return mean[0], std[0]
        return None

    @property
    def description(self) -> str:
        d = self.model.Description()
        return d.decode() if d else ""


def _vector_length(table: flatbuffers.table.Table, field: int) -> int:
    o = table.Offset(field)
    return table.VectorLen(o) if o else 0


def _vector_table(table: flatbuffers.table.Table, field: int, j: int) -> flatbuffers.table.Table | None:
    if j >= _vector_length(table, field):
        return None
    element = table.Vector(table.Offset(field)) + j * 4
    return flatbuffers.table.Table(table.Bytes, table.Indirect(element))


def _float_vector(table: flatbuffers.table.Table, field: int) -> list[float]:
    o = table.Offset(field)
    if not o:
        return []
    return table.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, o).tolist()
