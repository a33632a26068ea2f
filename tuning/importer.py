"""Import a .tflite file into a Relax IRModule, MediaPipe custom ops included."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import tflite
import tvm
from tvm import relax
from tvm.relax.frontend.tflite import tflite_frontend

from runtime.errors import SelfieTvmError
from runtime.tflite_graph import TFLiteGraph

from .custom_ops import CUSTOM_CONVERTERS


class UnsupportedOperatorError(SelfieTvmError):
    def __init__(self, model: str, ops: Counter) -> None:
        self.ops = ops
        listing = ", ".join(f"{name} x{count}" for name, count in sorted(ops.items()))
        super().__init__(f"{model} uses operators that selfie-tvm cannot convert to TVM: {listing}")


class MediaPipeOperatorConverter(tflite_frontend.OperatorConverter):
    """TVM's TFLite converter plus converters for MediaPipe's custom operators."""

    def __init__(self, model, subgraph, exp_tab, ctx, conversion_state=None):
        super().__init__(model, subgraph, exp_tab, ctx, conversion_state)
        for name, fn in CUSTOM_CONVERTERS.items():
            self.convert_map[name] = lambda op, fn=fn: fn(self, op)

    def get_op_code_str(self, op):
        code = self.model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.CUSTOM:
            return code.CustomCode().decode()
        return super().get_op_code_str(op)


def supported_ops() -> set[str]:
    converter = MediaPipeOperatorConverter.__new__(MediaPipeOperatorConverter)
    tflite_frontend.OperatorConverter.__init__(converter, None, None, None, None)
    return set(converter.convert_map) | set(CUSTOM_CONVERTERS)


def check_supported(graph: TFLiteGraph, model_name: str) -> None:
    known = supported_ops()
    missing = Counter(op.name for op in graph.ops if op.name not in known)
    if missing:
        raise UnsupportedOperatorError(model_name, missing)


def import_tflite(path: Path, model_name: str | None = None) -> tvm.IRModule:
    """Relax module with weights embedded as constants; input named as in the .tflite file."""
    graph = TFLiteGraph.load(path)
    check_supported(graph, model_name or Path(path).name)
    mod = tflite_frontend.from_tflite(graph.model, op_converter=MediaPipeOperatorConverter)
    # TVM lowers conv2d_transpose only for NCHW data / IOHW kernels; TFLite's is NHWC.
    return relax.transform.ConvertLayout({"relax.nn.conv2d_transpose": ["NCHW", "IOHW"]})(mod)


def optimize(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """The graph-level passes shared by the default build and tuning (fusion, constant folding).

    Tuning records are keyed by the fused kernels this produces: change it and records go stale.
    """
    seq = tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.get_pipeline("zero"),
    ])
    with target:
        return seq(mod)
