"""Serialise a `GraphBuilder` graph into a TFLite flatbuffer (schema v3) without TensorFlow."""

from __future__ import annotations

import importlib

import flatbuffers
import numpy as np
import tflite

from .graph import GraphBuilder

# The package re-exports each table's class under the module's name; the builder functions
# (Start/Add*/End) live on the modules themselves.
AddOptions = importlib.import_module("tflite.AddOptions")
Buffer = importlib.import_module("tflite.Buffer")
Conv2DOptions = importlib.import_module("tflite.Conv2DOptions")
DepthwiseConv2DOptions = importlib.import_module("tflite.DepthwiseConv2DOptions")
Model = importlib.import_module("tflite.Model")
MulOptions = importlib.import_module("tflite.MulOptions")
Operator = importlib.import_module("tflite.Operator")
OperatorCode = importlib.import_module("tflite.OperatorCode")
ReducerOptions = importlib.import_module("tflite.ReducerOptions")
ReshapeOptions = importlib.import_module("tflite.ReshapeOptions")
ResizeBilinearOptions = importlib.import_module("tflite.ResizeBilinearOptions")
ResizeNearestNeighborOptions = importlib.import_module("tflite.ResizeNearestNeighborOptions")
SoftmaxOptions = importlib.import_module("tflite.SoftmaxOptions")
SubGraph = importlib.import_module("tflite.SubGraph")
Tensor = importlib.import_module("tflite.Tensor")
TransposeConvOptions = importlib.import_module("tflite.TransposeConvOptions")
TransposeOptions = importlib.import_module("tflite.TransposeOptions")


BUFFER_ALIGNMENT = 16
# Operator versions whose kernels in LiteRT implement the options used here
# (bias input for TRANSPOSE_CONV, half_pixel_centers for the resizes).
OP_VERSIONS = {"TRANSPOSE_CONV": 3, "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3}
_PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}
_ACTIVATION = {"NONE": tflite.ActivationFunctionType.NONE, "RELU": tflite.ActivationFunctionType.RELU}
_TENSOR_TYPE = {"float32": tflite.TensorType.FLOAT32, "int32": tflite.TensorType.INT32}


def _int_vector(b: flatbuffers.Builder, values) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _aligned_bytes(b: flatbuffers.Builder, data: bytes) -> int:
    b.StartVector(1, len(data), BUFFER_ALIGNMENT)
    b.head = b.head - len(data)
    b.Bytes[b.head : b.head + len(data)] = data
    return b.EndVector()


def _options(b: flatbuffers.Builder, op: str, o: dict) -> tuple[int, int]:
    """Return (BuiltinOptions union type, offset) for one operator."""
    T = tflite.BuiltinOptions
    if op == "CONV_2D":
        Conv2DOptions.Start(b)
        Conv2DOptions.AddPadding(b, _PADDING[o["padding"]])
        Conv2DOptions.AddStrideW(b, o["stride"])
        Conv2DOptions.AddStrideH(b, o["stride"])
        Conv2DOptions.AddFusedActivationFunction(b, _ACTIVATION[o["activation"]])
        Conv2DOptions.AddDilationWFactor(b, 1)
        Conv2DOptions.AddDilationHFactor(b, 1)
        return T.Conv2DOptions, Conv2DOptions.End(b)
    if op == "DEPTHWISE_CONV_2D":
        DepthwiseConv2DOptions.Start(b)
        DepthwiseConv2DOptions.AddPadding(b, _PADDING[o["padding"]])
        DepthwiseConv2DOptions.AddStrideW(b, o["stride"])
        DepthwiseConv2DOptions.AddStrideH(b, o["stride"])
        DepthwiseConv2DOptions.AddDepthMultiplier(b, 1)
        DepthwiseConv2DOptions.AddFusedActivationFunction(b, _ACTIVATION[o["activation"]])
        DepthwiseConv2DOptions.AddDilationWFactor(b, o.get("dilation", 1))
        DepthwiseConv2DOptions.AddDilationHFactor(b, o.get("dilation", 1))
        return T.DepthwiseConv2DOptions, DepthwiseConv2DOptions.End(b)
    if op == "TRANSPOSE_CONV":
        TransposeConvOptions.Start(b)
        TransposeConvOptions.AddPadding(b, _PADDING[o["padding"]])
        TransposeConvOptions.AddStrideW(b, o["stride"])
        TransposeConvOptions.AddStrideH(b, o["stride"])
        return T.TransposeConvOptions, TransposeConvOptions.End(b)
    if op == "ADD":
        AddOptions.Start(b)
        AddOptions.AddFusedActivationFunction(b, _ACTIVATION[o["activation"]])
        return T.AddOptions, AddOptions.End(b)
    if op == "MUL":
        MulOptions.Start(b)
        MulOptions.AddFusedActivationFunction(b, _ACTIVATION[o["activation"]])
        return T.MulOptions, MulOptions.End(b)
    if op == "RESHAPE":
        new_shape = _int_vector(b, o["new_shape"])
        ReshapeOptions.Start(b)
        ReshapeOptions.AddNewShape(b, new_shape)
        return T.ReshapeOptions, ReshapeOptions.End(b)
    if op == "TRANSPOSE":
        TransposeOptions.Start(b)
        return T.TransposeOptions, TransposeOptions.End(b)
    if op == "SOFTMAX":
        SoftmaxOptions.Start(b)
        SoftmaxOptions.AddBeta(b, o["beta"])
        return T.SoftmaxOptions, SoftmaxOptions.End(b)
    if op == "SUM":
        ReducerOptions.Start(b)
        ReducerOptions.AddKeepDims(b, o["keep_dims"])
        return T.ReducerOptions, ReducerOptions.End(b)
    if op == "RESIZE_BILINEAR":
        ResizeBilinearOptions.Start(b)
        ResizeBilinearOptions.AddAlignCorners(b, o["align_corners"])
        ResizeBilinearOptions.AddHalfPixelCenters(b, o["half_pixel_centers"])
        return T.ResizeBilinearOptions, ResizeBilinearOptions.End(b)
    if op == "RESIZE_NEAREST_NEIGHBOR":
        ResizeNearestNeighborOptions.Start(b)
        ResizeNearestNeighborOptions.AddAlignCorners(b, o["align_corners"])
        ResizeNearestNeighborOptions.AddHalfPixelCenters(b, o["half_pixel_centers"])
        return T.ResizeNearestNeighborOptions, ResizeNearestNeighborOptions.End(b)
    raise ValueError(f"no TFLite serialisation for operator {op}")


def serialise(g: GraphBuilder, description: str) -> bytes:
    b = flatbuffers.Builder(32 * 1024 * 1024)

    # Buffers: 0 is the empty sentinel TFLite expects; one per constant tensor after that.
    buffer_of_tensor: dict[int, int] = {}
    buffer_offsets: list[int] = []
    Buffer.Start(b)
    buffer_offsets.append(Buffer.End(b))
    for t in g.tensors:
        if t.data is None:
            continue
        data = _aligned_bytes(b, t.data.astype("<" + t.data.dtype.str[1:], copy=False).tobytes())
        Buffer.Start(b)
        Buffer.AddData(b, data)
        buffer_of_tensor[t.index] = len(buffer_offsets)
        buffer_offsets.append(Buffer.End(b))

    tensor_offsets = []
    for t in g.tensors:
        name = b.CreateString(t.name)
        shape = _int_vector(b, t.shape)
        Tensor.Start(b)
        Tensor.AddShape(b, shape)
        Tensor.AddType(b, _TENSOR_TYPE[t.dtype])
        Tensor.AddBuffer(b, buffer_of_tensor.get(t.index, 0))
        Tensor.AddName(b, name)
        tensor_offsets.append(Tensor.End(b))

    op_names = sorted({o.op for o in g.operators})
    opcode_index = {name: i for i, name in enumerate(op_names)}
    opcode_offsets = []
    for name in op_names:
        # Names that are not TFLite builtins become CUSTOM ops with that custom code.
        code = getattr(tflite.BuiltinOperator, name, tflite.BuiltinOperator.CUSTOM)
        custom_code = b.CreateString(name) if code == tflite.BuiltinOperator.CUSTOM else None
        OperatorCode.Start(b)
        OperatorCode.AddDeprecatedBuiltinCode(b, min(code, 127))
        OperatorCode.AddBuiltinCode(b, code)
        if custom_code is not None:
            OperatorCode.AddCustomCode(b, custom_code)
        OperatorCode.AddVersion(b, OP_VERSIONS.get(name, 1))
        opcode_offsets.append(OperatorCode.End(b))

    operator_offsets = []
    for o in g.operators:
        inputs = _int_vector(b, o.inputs)
        outputs = _int_vector(b, o.outputs)
        custom = not hasattr(tflite.BuiltinOperator, o.op)
        options_type, options = (0, None) if custom else _options(b, o.op, o.options)
        Operator.Start(b)
        Operator.AddOpcodeIndex(b, opcode_index[o.op])
        Operator.AddInputs(b, inputs)
        Operator.AddOutputs(b, outputs)
        if options is not None:
            Operator.AddBuiltinOptionsType(b, options_type)
            Operator.AddBuiltinOptions(b, options)
        operator_offsets.append(Operator.End(b))

    tensors_vec = _offset_vector(b, tensor_offsets)
    operators_vec = _offset_vector(b, operator_offsets)
    sg_inputs = _int_vector(b, g.inputs)
    sg_outputs = _int_vector(b, g.outputs)
    sg_name = b.CreateString("main")
    SubGraph.Start(b)
    SubGraph.AddTensors(b, tensors_vec)
    SubGraph.AddInputs(b, sg_inputs)
    SubGraph.AddOutputs(b, sg_outputs)
    SubGraph.AddOperators(b, operators_vec)
    SubGraph.AddName(b, sg_name)
    subgraph = SubGraph.End(b)

    subgraphs_vec = _offset_vector(b, [subgraph])
    opcodes_vec = _offset_vector(b, opcode_offsets)
    buffers_vec = _offset_vector(b, buffer_offsets)
    desc = b.CreateString(description)
    Model.Start(b)
    Model.AddVersion(b, 3)
    Model.AddOperatorCodes(b, opcodes_vec)
    Model.AddSubgraphs(b, subgraphs_vec)
    Model.AddDescription(b, desc)
    Model.AddBuffers(b, buffers_vec)
    b.Finish(Model.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())
