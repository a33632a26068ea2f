"""Cut a .tflite graph into single-operator models, and describe each operator by a signature.

`single_op_model(model, i)` keeps operator i with its options and its constant tensors (weights, biases,
shape vectors) byte for byte; its non-constant inputs become the model's inputs and its outputs the
model's outputs. A constant reached through a DEQUANTIZE (fp16 weights in MediaPipe's files) stays
constant: the DEQUANTIZE comes along, as in the full model, where XNNPACK folds it at load time.

`signature(op)` names what the operator computes (kind, input and weight shapes, stride) so that TVM's
kernels (benchmark/kernel_signature.py) can be joined with LiteRT's operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ai_edge_litert.tools import flatbuffer_utils as fb

from runtime.errors import SelfieTvmError
from runtime.tflite_graph import OpInfo, TFLiteGraph

DEQUANTIZE = "DEQUANTIZE"
FOLDED_KIND = "dequantize-weights"  # DEQUANTIZEs of constants, folded at load
TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"  # MediaPipe's custom transposed convolution
CONVOLUTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", TRANSPOSE_CONV_BIAS}
# Operators that TVM fuses into the kernel that produces their input (FuseOps: element-wise and
# broadcast ops after an anchor). Their LiteRT time is counted with that producer's group.
EPILOGUES = {"ADD", "MUL", "SUB", "DIV", "RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH",
             "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "LEAKY_RELU"}
# Operators that only move data: TVM fuses chains of them into one kernel.
LAYOUT = {"RESHAPE", "TRANSPOSE"}
# TFLite operator -> the kind name shared with TVM's kernel names (benchmark/kernel_signature.py).
KINDS = {"ADD": "add", "MUL": "multiply", "SUB": "subtract", "DIV": "divide", "RESIZE_BILINEAR": "resize",
         "RESIZE_NEAREST_NEIGHBOR": "resize", "SOFTMAX": "softmax", "SUM": "sum", "MEAN": "mean",
         "TRANSPOSE": "transpose", "RESHAPE": "reshape", "LOGISTIC": "sigmoid", "AVERAGE_POOL_2D": "avg-pool",
         "MAX_POOL_2D": "max-pool", "CONCATENATION": "concatenate", "RELU": "relu", "HARD_SWISH": "hard-swish",
         DEQUANTIZE: "dequantize", "PRELU": "prelu", "MaxPoolingWithArgmax2D": "max-pool-argmax",
         "MaxUnpooling2D": "max-unpool"}


class SingleOpError(SelfieTvmError):
    """An operator that cannot be cut out of its graph."""


def _dims(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class Signature:
    """What an operator (or a TVM kernel's anchor) computes: equal signatures are the same work.

    Convolutions: kind (conv1x1, conv3x3, depthwise3x3, transpose-conv2x2, ...), NHWC input, weight in
    TFLite's layout (OHWI; depthwise 1HWC) and stride, taken from the shapes on both sides (in/out for
    convolutions, out/in for transposed ones) so that the two engines' layouts cannot make them differ.
    Everything else: kind and output shape."""

    kind: str
    input: tuple[int, ...] = ()
    weight: tuple[int, ...] = ()
    stride: int = 0
    output: tuple[int, ...] = ()

    @property
    def is_convolution(self) -> bool:
        return bool(self.weight)

    @property
    def text(self) -> str:
        if self.is_convolution:
            return f"{self.kind} in {_dims(self.input)} w {_dims(self.weight)} s{self.stride}"
        return f"{self.kind} {_dims(self.output)}" if self.output else self.kind


def conv_signature(kind: str, data: tuple[int, ...], weight: tuple[int, ...], out: tuple[int, ...]) -> Signature:
    """kind is conv / depthwise / group-conv / transpose-conv; weight in TFLite's layout (kernel at [1:3])."""
    kh, kw = weight[1], weight[2]
    stride = round(out[1] / data[1]) if kind == "transpose-conv" else max(1, round(data[1] / out[1]))
    return Signature(f"{kind}{kh}x{kw}", tuple(data), tuple(weight), stride)


def signature(op: OpInfo) -> Signature:
    ins, out = op.input_shapes, op.output_shapes[0] if op.output_shapes else ()
    if op.name == "CONV_2D":
        return conv_signature("conv", ins[0], ins[1], out)
    if op.name == "DEPTHWISE_CONV_2D":
        return conv_signature("depthwise", ins[0], ins[1], out)
    if op.name == "TRANSPOSE_CONV":  # inputs: output shape, weights (OHWI), data, bias
        return conv_signature("transpose-conv", ins[2], ins[1], out)
    if op.name == TRANSPOSE_CONV_BIAS:  # inputs: data, weights (OHWI), bias
        return conv_signature("transpose-conv", ins[0], ins[1], out)
    return Signature(KINDS.get(op.name, op.name.lower()), output=tuple(out))


class SingleOpModels:
    """A .tflite file read once, from which each operator's own model is written."""

    def __init__(self, data: bytes) -> None:
        self.ops: list[OpInfo] = TFLiteGraph(data).ops
        self.model = fb.read_model_from_bytearray(bytearray(data))
        if len(self.model.subgraphs) != 1:
            raise SingleOpError(f"the model has {len(self.model.subgraphs)} subgraphs; only one is supported")
        self.subgraph = self.model.subgraphs[0]

    def __len__(self) -> int:
        return len(self.subgraph.operators)

    @cached_property
    def _producer(self) -> dict[int, int]:
        return {t: i for i, op in enumerate(self.subgraph.operators) for t in op.outputs}

    @cached_property
    def _consumers(self) -> dict[int, int]:
        """How many operators read each tensor; a graph output counts as one more reader."""
        counts: dict[int, int] = {}
        for op in self.subgraph.operators:
            for t in set(op.inputs):
                counts[t] = counts.get(t, 0) + 1
        for t in self.subgraph.outputs:
            counts[t] = counts.get(t, 0) + 1
        return counts

    @cached_property
    def groups(self) -> list[int]:
        """For each operator, the operator that anchors its group: what one TVM kernel computes.

        Relax's FuseOps puts element-wise and broadcast operators into the kernel of the anchor that
        produces their input, and chains of reshapes and transposes into one kernel. Mirrored here: an
        EPILOGUES operator joins the group whose last operator produces one of its inputs, if nothing else
        reads that input; among several, a convolution's own output first (then the first input), since
        that is where TVM puts it in the twin (`fused_conv2d25_add18_add20`: the FFN's 1x1 conv takes the
        block's final residual add). A LAYOUT operator joins a group of LAYOUT operators the same way.
        Every other operator (and a DEQUANTIZE of constants, folded) anchors its own group."""
        groups: list[int] = []
        tail: dict[int, int] = {}  # anchor -> the group's last operator
        for i, op in enumerate(self.subgraph.operators):
            name = self.ops[i].name
            candidates = []
            for position, t in enumerate(op.inputs):
                p = self._producer.get(t)
                if p is None or self._consumers.get(t, 0) != 1 or tail.get(groups[p]) != p or self.is_folded(p):
                    continue
                anchor = self.ops[groups[p]].name
                if (name in EPILOGUES and anchor not in LAYOUT) or (name in LAYOUT and anchor in LAYOUT):
                    candidates.append((not (anchor in CONVOLUTIONS and p == groups[p]), position, p))
            group = groups[min(candidates)[2]] if candidates else i
            groups.append(group)
            tail[group] = i
        return groups

    def group_signature(self, anchor: int) -> Signature:
        """A convolution group is named by its convolution; any other by its anchor's kind and the
        group's output shape (the last operator's), as a fused TVM kernel is. Folded DEQUANTIZEs are one
        signature: they run neither in LiteRT's inference nor in TVM's (both fold them into the weights)."""
        if self.is_folded(anchor):
            return Signature(FOLDED_KIND)
        sig = signature(self.ops[anchor])
        if sig.is_convolution:
            return sig
        last = max(i for i, g in enumerate(self.groups) if g == anchor)
        return Signature(sig.kind, output=self.ops[last].output_shapes[0] if self.ops[last].output_shapes else ())

    def is_constant(self, tensor: int) -> bool:
        buffer = self.model.buffers[self.subgraph.tensors[tensor].buffer]
        return buffer.data is not None and len(buffer.data) > 0

    def constant_dequantize(self, tensor: int) -> int | None:
        """The DEQUANTIZE operator that turns a constant into `tensor`, if one does."""
        i = self._producer.get(tensor)
        if i is None:
            return None
        op = self.subgraph.operators[i]
        code = self.model.operatorCodes[op.opcodeIndex]
        if fb.get_builtin_code_from_operator_code(code) != fb.BuiltinOperator.DEQUANTIZE:
            return None
        return i if all(self.is_constant(t) for t in op.inputs if t >= 0) else None

    def is_folded(self, index: int) -> bool:
        """A DEQUANTIZE of constants: XNNPACK folds it into the weights it packs at load time, so it costs
        nothing per inference (and alone, with nothing to fold into, XNNPACK refuses to run it)."""
        outputs = self.subgraph.operators[index].outputs
        return bool(outputs) and all(self.constant_dequantize(t) == index for t in outputs)

    def operators_of(self, index: int) -> list[int]:
        """Operator `index` after the DEQUANTIZEs of constants that feed it."""
        if not 0 <= index < len(self):
            raise SingleOpError(f"operator {index} does not exist: the graph has {len(self)} operators")
        feeding = [self.constant_dequantize(t) for t in self.subgraph.operators[index].inputs if t >= 0]
        return [i for i in dict.fromkeys(feeding) if i is not None and i != index] + [index]

    def single_op_model(self, index: int) -> bytes:
        ops = [self.subgraph.operators[i] for i in self.operators_of(index)]
        produced = {t for op in ops[:-1] for t in op.outputs}
        used = list(dict.fromkeys(t for op in ops for t in [*op.inputs, *op.outputs] if t >= 0))
        tensor_map = {old: new for new, old in enumerate(used)}
        buffers = [fb.BufferT()]  # buffer 0 is the empty one, by convention
        tensors = []
        for old in used:
            tensor = _copy(self.subgraph.tensors[old])
            if self.is_constant(old):
                buffers.append(self.model.buffers[tensor.buffer])
                tensor.buffer = len(buffers) - 1
            else:
                tensor.buffer = 0
            tensors.append(tensor)
        new_ops = []
        for op in ops:
            copy = _copy(op)
            copy.inputs = [tensor_map[t] if t >= 0 else t for t in op.inputs]
            copy.outputs = [tensor_map[t] for t in op.outputs]
            copy.intermediates = [tensor_map[t] for t in (op.intermediates or []) if t in tensor_map] or None
            new_ops.append(copy)
        last = ops[-1]
        sub = fb.SubGraphT()
        sub.tensors = tensors
        sub.operators = new_ops
        sub.inputs = [tensor_map[t] for t in dict.fromkeys(last.inputs)
                      if t >= 0 and not self.is_constant(t) and t not in produced]
        sub.outputs = [tensor_map[t] for t in last.outputs]
        sub.name = f"operator_{index}"
        model = fb.ModelT()
        model.version = self.model.version
        source = self.model.description
        model.description = f"operator {index} of {source.decode() if isinstance(source, bytes) else source or ''}"
        model.operatorCodes = self.model.operatorCodes
        model.subgraphs = [sub]
        model.buffers = buffers
        return bytes(fb.convert_object_to_bytearray(model))


def _copy(obj):
    """A shallow copy of a flatbuffers object-API table (its fields are plain attributes)."""
    clone = type(obj)()
    clone.__dict__.update(obj.__dict__)
    return clone
