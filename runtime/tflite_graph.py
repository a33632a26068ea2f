"""Read a .tflite file's operator graph: op names, tensor shapes, MAC counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tflite

_BUILTIN_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


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
        if self.name == "TRANSPOSE_CONV":
            cout, kh, kw, _ = self.input_shapes[1]
            return int(np.prod(self.input_shapes[2])) * kh * kw * cout
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

    @property
    def description(self) -> str:
        d = self.model.Description()
        return d.decode() if d else ""
