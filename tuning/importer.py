"""Import a .tflite file into a Relax IRModule, MediaPipe custom ops included."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import tvm
from tvm import relax
from tvm.relax.frontend.tflite import tflite_frontend

from runtime.errors import SelfieTvmError
from runtime.tflite_graph import TFLiteGraph, op_name

from .custom_ops import CUSTOM_CONVERTERS, ONE_PASS_CONVERTERS, convert_transpose_conv_bias
from .import_rewrites import REWRITES
from .transforms import subpixel_transposed_convolutions


@dataclass(frozen=True)
class GraphOptions:
    """Graph-level choices of a build. Tuning records are keyed by the kernels these produce."""

    # conv2d_transpose as one sub-pixel convolution (tuning/transforms.py) instead of TVM's
    # dilate + pad + conv, which multiplies zeros and needs layout copies around it.
    subpixel_transposed_conv: bool = True
    # Mark constant weights layout-free so MetaSchedule's RewriteLayout may re-block them for its
    # schedule; the re-blocking is folded into the constants at build time (weight prepacking).
    weight_prepack: bool = True
    # Operators imported without the stock frontend's artefacts (tuning/import_rewrites.py; MediaPipe's
    # transposed conv in NHWC, no transposes around it). Absent from older records' provenance: their
    # graphs had none of it (False keeps their kernels).
    clean_import: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


# What TVM gives without tuning: the stock import, nothing of ours. The default build uses it.
STOCK_GRAPH = GraphOptions(subpixel_transposed_conv=False, weight_prepack=False)
TUNED_GRAPH = GraphOptions(clean_import=True)


class UnsupportedOperatorError(SelfieTvmError):
    def __init__(self, model: str, ops: Counter) -> None:
        self.ops = ops
        listing = ", ".join(f"{name} x{count}" for name, count in sorted(ops.items()))
        super().__init__(f"{model} uses operators that selfie-tvm cannot convert to TVM: {listing}")


class MediaPipeOperatorConverter(tflite_frontend.OperatorConverter):
    """TVM's TFLite converter plus converters for MediaPipe's custom operators."""

    custom_converters = CUSTOM_CONVERTERS

    def __init__(self, model, subgraph, exp_tab, ctx, conversion_state=None):
        super().__init__(model, subgraph, exp_tab, ctx, conversion_state)
        for name, fn in self.custom_converters.items():
            self.convert_map[name] = lambda op, fn=fn: fn(self, op)

    def get_op_code_str(self, op):
        # custom ops by their custom code, so CUSTOM_CONVERTERS can claim them
        return op_name(self.model, op.OpcodeIndex())


class CleanOperatorConverter(MediaPipeOperatorConverter):
    """The tuned graph's import: MediaPipeOperatorConverter without the stock artefacts (GraphOptions.clean_import)."""

    custom_converters = {**CUSTOM_CONVERTERS, **ONE_PASS_CONVERTERS,
                         "Convolution2DTransposeBias": partial(convert_transpose_conv_bias, layout="NHWC")}

    def __init__(self, model, subgraph, exp_tab, ctx, conversion_state=None):
        super().__init__(model, subgraph, exp_tab, ctx, conversion_state)
        for name, fn in REWRITES.items():
            self.convert_map[name] = lambda op, fn=fn, stock=self.convert_map[name]: fn(self, op, stock)


def supported_ops() -> set[str]:
    converter = MediaPipeOperatorConverter.__new__(MediaPipeOperatorConverter)
    tflite_frontend.OperatorConverter.__init__(converter, None, None, None, None)
    return set(converter.convert_map) | set(CUSTOM_CONVERTERS)


def check_supported(graph: TFLiteGraph, model_name: str) -> None:
    known = supported_ops()
    missing = Counter(op.name for op in graph.ops if op.name not in known)
    if missing:
        raise UnsupportedOperatorError(model_name, missing)


def import_tflite(path: Path, model_name: str | None = None, options: GraphOptions = STOCK_GRAPH) -> tvm.IRModule:
    """Relax module with weights embedded as constants; input named as in the .tflite file."""
    graph = TFLiteGraph.load(path)
    check_supported(graph, model_name or Path(path).name)
    converter = CleanOperatorConverter if options.clean_import else MediaPipeOperatorConverter
    mod = tflite_frontend.from_tflite(graph.model, op_converter=converter)
    if options.subpixel_transposed_conv:
        mod = subpixel_transposed_convolutions(mod)
    # TVM lowers conv2d_transpose only for NCHW data / IOHW kernels; TFLite's is NHWC.
    return relax.transform.ConvertLayout({"relax.nn.conv2d_transpose": ["NCHW", "IOHW"]})(mod)


def optimize(mod: tvm.IRModule, target: tvm.target.Target, options: GraphOptions = STOCK_GRAPH) -> tvm.IRModule:
    """The graph-level passes shared by the default build and tuning (fusion, constant folding).

    Tuning records are keyed by the fused kernels this produces: change it and records go stale.
    """
    passes = [
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.get_pipeline("zero"),
    ]
    if options.weight_prepack:
        passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
    with target:
        return tvm.transform.Sequential(passes)(mod)


def finalize(mod: tvm.IRModule, target: tvm.target.Target, options: GraphOptions) -> tvm.IRModule:
    """After the records are applied: fold the weights' layout rewrites into the constants."""
    if not options.weight_prepack:
        return mod
    seq = tvm.transform.Sequential([
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
        # Folding leaves each prepacked weight bound as a tuple of constants unpacked item by item, which
        # the VM would build, unpack and free on every inference (4 calls per prepacked kernel): drop them.
        relax.transform.CanonicalizeBindings(),
        relax.transform.DeadCodeElimination(),
    ])
    with target:
        return seq(mod)
