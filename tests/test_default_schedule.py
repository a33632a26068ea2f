"""Kernels without a record get the default schedule (tuning/default_schedule.py), not naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, te, topi
from tvm.s_tir import meta_schedule as ms

from runtime.acquire import resolve_model
from runtime.artifacts import LibraryMetadata
from runtime.engines import create_engine
from runtime.processing import preprocess
from runtime.target import host_target
from tuning.build import apply_records, coverage, tuning_module
from tuning.default_schedule import default_schedule
from tuning.importer import TUNED_GRAPH, finalize

from .conftest import REAL_MODELS, need_model

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3", "num-cores": 2})


def _func(*tensors: te.Tensor) -> tvm.IRModule:
    return tvm.IRModule({"main": te.create_prim_func(list(tensors))})


def _kernels() -> dict[str, tvm.IRModule]:
    x = te.placeholder((1, 12, 10, 16), name="x")
    w3 = te.placeholder((3, 3, 16, 24), name="w3")
    w1 = te.placeholder((1, 1, 16, 24), name="w1")
    dw = te.placeholder((3, 3, 16, 1), name="dw")
    bias = te.placeholder((24,), name="bias")
    return {
        # selfie_segmenter's output kernel: NHWC -> NCHW and a sigmoid
        "transpose_sigmoid": _func(x, topi.sigmoid(topi.transpose(x, (0, 3, 1, 2)))),
        "conv3x3_bias_relu": _func(x, w3, bias, topi.nn.relu(topi.add(topi.nn.conv2d_nhwc(x, w3, 1, 1, 1), bias))),
        "conv1x1_bias": _func(x, w1, bias, topi.add(topi.nn.conv2d_nhwc(x, w1, 1, 0, 1), bias)),
        "depthwise_stride2": _func(x, dw, topi.nn.depthwise_conv2d_nhwc(x, dw, 2, 1, 1)),
        "global_sum": _func(x, topi.sum(x, axis=(1, 2), keepdims=True)),
        "resize": _func(x, topi.image.resize2d(x, (0, 0, 0, 0), (24, 20), layout="NHWC", method="linear",
                                               coordinate_transformation_mode="half_pixel")),
        "squeeze_excite_gate": _squeeze_excite_gate(),
    }


def _squeeze_excite_gate() -> tvm.IRModule:
    """selfie_segmenter's gate kernels: a 1x1 conv of the pooled 16 channels, sigmoid, times the feature map,
    plus a residual."""
    pooled = te.placeholder((1, 1, 1, 16), name="pooled")
    w = te.placeholder((1, 1, 16, 16), name="w")
    bias = te.placeholder((16,), name="bias")
    x = te.placeholder((1, 36, 64, 16), name="x")
    residual = te.placeholder((1, 36, 64, 16), name="residual")
    gate = topi.sigmoid(topi.add(topi.nn.conv2d_nhwc(pooled, w, 1, 0, 1), bias))
    return _func(pooled, w, bias, x, residual, topi.add(topi.multiply(x, gate), residual))


def _run(mod: tvm.IRModule, inputs: list[np.ndarray], out_shape) -> np.ndarray:
    lib = tvm.tirx.build(mod, target=TARGET)
    out = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
    lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    return out.numpy()


@pytest.mark.parametrize("name", list(_kernels()))
def test_the_default_schedule_is_parallel_vectorised_and_computes_the_same(name):
    mod = _kernels()[name]
    sch = s_tir.Schedule(mod)
    assert default_schedule(sch, cores=2)
    script = sch.mod.script()
    assert "T.vectorized" in script
    # a global pool keeps no spatial loop outside its reduction but the vectorised channels
    assert ("T.parallel" in script) == (name != "global_sum")
    shapes = [[int(d) for d in a.shape] for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype("float32") for s in shapes[:-1]]
    np.testing.assert_allclose(_run(sch.mod, inputs, shapes[-1]), _run(mod, inputs, shapes[-1]),
                               rtol=1e-5, atol=1e-5)


def test_a_gate_the_map_broadcasts_is_computed_once_not_per_pixel():
    """Inlined into the multiply, the sigmoid (and its bias add) would run 36x64 times per channel instead of once:
    it stays a block of its own, of 16 values, while the multiply is inlined into the residual add."""
    sch = s_tir.Schedule(_squeeze_excite_gate())
    assert default_schedule(sch, cores=2)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    assert [sch.get(b).name_hint for b in blocks] == ["conv2d_nhwc_init", "conv2d_nhwc_update", "compute", "T_add_1"]
    assert "T.sigmoid" in str(sch.get(blocks[2])) and "T.sigmoid" not in str(sch.get(blocks[3]))
    assert [int(iv.dom.extent) for iv in sch.get(blocks[2]).iter_vars] == [1, 1, 1, 16]


@pytest.mark.parametrize("name", REAL_MODELS)
def test_every_kernel_of_the_real_models_takes_the_default_schedule(name, tmp_path):
    """No kernel of a tuned build runs as naive loops, whatever the records cover (here: none)."""
    need_model(name)
    target = host_target()
    mod = tuning_module(resolve_model(name), target, TUNED_GRAPH)
    ms.database.JSONDatabase(work_dir=str(tmp_path), allow_missing=True)  # an empty database
    cover = coverage(mod, target, tmp_path)
    assert cover.kernels > 10 and len(cover.untuned) == cover.kernels
    assert list(cover.naive) == []


def test_a_build_without_records_agrees_with_litert(tmp_path, astronaut):
    """selfie_segmenter_landscape (custom transposed conv included), every kernel on the default schedule."""
    need_model("selfie_segmenter_landscape")
    model = resolve_model("selfie_segmenter_landscape")
    target = host_target()
    mod = tuning_module(model, target, TUNED_GRAPH)
    ms.database.JSONDatabase(work_dir=str(tmp_path), allow_missing=True)
    scheduled = apply_records(mod, target.to_tvm(), tmp_path)
    vm = relax.VirtualMachine(tvm.compile(finalize(scheduled, target.to_tvm(), TUNED_GRAPH), target=target.to_tvm()),
                              tvm.cpu())
    x = preprocess(astronaut, model.spec)
    got = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    expected = create_engine("litert", model, threads=1).run(x)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_the_warning_says_how_untuned_kernels_ran():
    """Libraries built before the default schedule (no naive_kernels in their metadata) ran them as naive loops."""
    base = dict(kind="tuned", model="m", model_sha256="0", target={}, tvm_version="0", kernels=3,
                untuned_kernels=["a", "b"])
    assert "(they run as naive loops)" in LibraryMetadata(**base).tuning_warning
    assert "default schedule: parallel and vectorised, not tuned)" in LibraryMetadata(**base,
                                                                                     naive_kernels=[]).tuning_warning
    assert "1 of them as naive loops (b)" in LibraryMetadata(**base, naive_kernels=["b"]).tuning_warning
