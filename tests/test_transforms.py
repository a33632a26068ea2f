"""The sub-pixel rewrite of conv2d_transpose computes what TVM's own lowering and LiteRT compute."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from runtime.processing import preprocess, to_probabilities
from tuning.transforms import subpixel_transposed_convolutions

TARGET = tvm.target.Target({"kind": "llvm", "num-cores": 2})


def _run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    with TARGET:
        mod = relax.get_pipeline("zero")(mod)
    vm = relax.VirtualMachine(tvm.compile(mod, target=TARGET), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _transposed_conv_module(layout, shape, weight, stride, padding) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d_transpose(x, relax.const(weight), strides=[stride, stride],
                                                     padding=padding, data_layout=layout, kernel_layout="IOHW",
                                                     out_layout=layout))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize(("layout", "cin", "cout", "kernel", "stride", "padding"), [
    ("NHWC", 8, 5, 2, 2, [0, 0, 0, 0]),  # the main model's: one 1x1 conv + depth-to-space
    ("NCHW", 6, 3, 2, 2, [0, 0, 0, 0]),
    ("NCHW", 4, 8, 4, 2, [1, 1, 1, 1]),  # overlapping taps (selfie_segmenter's kind)
    ("NCHW", 4, 8, 3, 2, [0, 0, 1, 1]),  # asymmetric padding (hair_segmentation's kind)
    ("NHWC", 3, 4, 4, 2, [1, 1, 1, 1]),
    ("NCHW", 4, 2, 3, 3, [1, 0, 1, 0]),
])
def test_subpixel_matches_tvms_own_lowering(layout, cin, cout, kernel, stride, padding):
    rng = np.random.default_rng(0)
    hw = 6
    shape = (1, hw, hw, cin) if layout == "NHWC" else (1, cin, hw, hw)
    x = rng.standard_normal(shape).astype("float32")
    weight = rng.standard_normal((cin, cout, kernel, kernel)).astype("float32")
    mod = _transposed_conv_module(layout, shape, weight, stride, padding)
    rewritten = subpixel_transposed_convolutions(mod)
    assert "conv2d_transpose(" not in rewritten.script(show_meta=False).replace("subpixel_conv2d_transpose", "")
    # TVM lowers only NCHW conv2d_transpose: its reference goes through a layout conversion.
    reference = _run(relax.transform.ConvertLayout({"relax.nn.conv2d_transpose": ["NCHW", "IOHW"]})(mod), x)
    np.testing.assert_allclose(_run(rewritten, x), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["selfie_segmenter", "hair_segmentation", "deeplab_v3"])
def test_tuned_graph_of_real_models_agrees_with_litert(name, astronaut):
    """Real MediaPipe models built from the tuned graph (no records): transposed convolutions in NHWC,
    per-channel PReLU (hair), identity and 1x1 resizes rewritten (deeplab_v3)."""
    from runtime.acquire import resolve_model
    from runtime.engines import create_engine
    from runtime.target import host_target
    from tuning.build import compile_module
    from tuning.importer import TUNED_GRAPH

    from .conftest import need_model

    need_model(name)
    model = resolve_model(name)
    executable, *_ = compile_module(model, host_target(), None, TUNED_GRAPH)
    x = preprocess(astronaut, model.spec)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    ours = to_probabilities(vm["main"](tvm.runtime.tensor(x)).numpy(), model.spec)
    theirs = to_probabilities(create_engine("litert", model, 1).run(x), model.spec)
    assert np.abs(ours - theirs).max() <= 1e-4
