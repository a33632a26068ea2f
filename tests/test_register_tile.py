"""The 1x1 convolutions' register-tile schedule and its MetaSchedule designs (tuning/register_tile.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import types

import numpy as np
import pytest
import tvm
from tvm import s_tir, te, topi
from tvm.s_tir import meta_schedule as ms

from runtime.acquire import ResolvedModel
from runtime.registry import InputSpec, registry
from runtime.target import host_target
from runtime.twin.graph import GraphBuilder
from runtime.twin.tflite_writer import serialise
from tuning.build import apply_records, tuning_module
from tuning.database import read_records, write_database
from tuning.importer import STOCK_GRAPH, TUNED_GRAPH, finalize
from tuning.register_tile import (
    TILE_ANNOTATION,
    TILES,
    register_tile_designs,
    skip_reason,
    tile_pointwise_conv,
    wants_register_tiles,
)
from tuning.scheduler import MIN_FIRST_BATCH, register_tile_batch
from tuning.tasks import TaskPlan
from tuning.tune import small_search, tune, untried_register_tile_tasks

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3", "num-cores": 2})


def conv_bias_relu(kernel: int = 1, width: int = 23, cin: int = 24, cout: int = 32) -> tvm.IRModule:
    """NHWC conv + bias + ReLU + residual-style add, as the twin's legalised kernels are; a row of
    23 pixels leaves a tail for every tile of 4-6 pixels."""
    data = te.placeholder((1, 5, width, cin), name="data")
    weight = te.placeholder((kernel, kernel, cin, cout), name="weight")
    bias = te.placeholder((cout,), name="bias")
    other = te.placeholder((1, 5, width, cout), name="other")
    conv = topi.nn.conv2d_nhwc(data, weight, 1, kernel // 2, 1)
    out = topi.add(topi.nn.relu(topi.add(conv, bias)), other)
    return tvm.IRModule({"main": te.create_prim_func([data, weight, bias, other, out])})


def outputs(mod: tvm.IRModule, inputs: list[np.ndarray], out_shape: tuple) -> np.ndarray:
    lib = tvm.compile(mod, target=TARGET)
    out = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
    lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    return out.numpy()


def random_inputs(width: int = 23, cin: int = 24, cout: int = 32, kernel: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    shapes = [(1, 5, width, cin), (kernel, kernel, cin, cout), (cout,), (1, 5, width, cout)]
    return [rng.standard_normal(s).astype("float32") for s in shapes]


@pytest.mark.parametrize("px", [4, 5, 6])
def test_the_tile_computes_what_the_unscheduled_kernel_does(px):
    mod = conv_bias_relu()
    sch = s_tir.Schedule(mod)
    tile_pointwise_conv(sch, sch.get_sblock("conv2d_nhwc"), px=px, ch=16, channel_tiles=2)
    script = sch.mod.script()
    # the whole epilogue went into the accumulators' write-back: one output pass, no intermediate tensor
    assert 'sblock("T_add' not in script and 'sblock("compute")' not in script
    inputs = random_inputs()
    expected = outputs(mod, inputs, (1, 5, 23, 32))
    np.testing.assert_allclose(outputs(sch.mod, inputs, (1, 5, 23, 32)), expected, rtol=1e-5, atol=1e-5)


def test_designs_exist_for_pointwise_convs_only():
    assert len(register_tile_designs(s_tir.Schedule(conv_bias_relu()))) == len(TILES)
    assert register_tile_designs(s_tir.Schedule(conv_bias_relu(kernel=3))) == []
    assert register_tile_designs(s_tir.Schedule(conv_bias_relu(cout=24))) == []  # no 16-channel tile fits


def test_avx2_targets_want_the_tiles_and_avx512_ones_do_not():
    assert wants_register_tiles(TARGET)
    assert not wants_register_tiles(tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v4", "num-cores": 2}))


def test_the_first_tile_pass_takes_only_what_the_first_round_and_the_time_limit_leave():
    # the twin from empty: 32 kernels with tile designs, 38 others
    assert register_tile_batch(2000, 38, 32, per_iter=16) == 16
    assert register_tile_batch(2000, 38, 32, per_iter=16, time_limit_s=3600) == 900 // 70
    assert register_tile_batch(2000, 38, 32, per_iter=16, time_limit_s=600) == 0  # 2 each: skipped
    assert register_tile_batch(38 * MIN_FIRST_BATCH + 31 * MIN_FIRST_BATCH, 38, 32, per_iter=16) == 0
    assert register_tile_batch(38 * MIN_FIRST_BATCH + 32 * MIN_FIRST_BATCH, 38, 32, per_iter=16) == MIN_FIRST_BATCH
    assert register_tile_batch(100, 0, 0, per_iter=16) == 0


def pointwise_model(path) -> ResolvedModel:
    """16x20 pixels x 32 channels into a 1x1 conv to 32 channels: one tile-able kernel."""
    g = GraphBuilder(seed=13)
    x = g.input("image", (1, 16, 20, 3))
    y = g.conv2d(x, 32, 3, relu=True)
    g.mark_output(g.conv2d(y, 32, relu=True), "logits")
    path.write_bytes(serialise(g, "one 1x1 conv of 32 channels"))
    spec = dataclasses.replace(registry().get("selfie_multiclass_twin"), name="pointwise", synthetic=True,
                               input=InputSpec(16, 20, "NHWC", (0.0, 1.0)))
    return ResolvedModel(spec, path, "explicit")


@pytest.mark.slow
def test_a_tune_with_the_tiles_leaves_records_that_a_build_replays(tmp_path, capfd):
    model = pointwise_model(tmp_path / "pointwise.tflite")
    target = host_target()
    mod = tuning_module(model, target, TUNED_GRAPH)
    work = tmp_path / "records"
    # A small search and a deadline: the test is about the tile designs' records, not their speed.
    tune(mod, target.to_tvm(), work, budget=8, per_iter=4, progress=False, only=["fused_conv2d1"],
         register_tiles=True, search=small_search(), time_limit_s=400)
    # The tile pass, then the union space: MetaSchedule's INFO lines of both go to the log file only.
    terminal = capfd.readouterr()
    assert "task_scheduler.cc" not in terminal.out + terminal.err
    assert any("Initializing Task" in log.read_text() for log in (work / "logs").glob("*.log"))
    tiled = [r for r in read_records(work) if TILE_ANNOTATION in json.dumps(r.body[0]) and r.cost_s is not None]
    assert tiled, "no measured record came from the register-tile designs"
    write_database(tmp_path / "tiled", tiled[:1], compressed=False)
    tvm_target = target.to_tvm()
    scheduled = apply_records(mod, tvm_target, tmp_path / "tiled")
    kernel = next(f for gv, f in scheduled.functions.items() if gv.name_hint.startswith("fused_conv2d1"))
    assert TILE_ANNOTATION in kernel.script()
    x = np.random.default_rng(1).random((1, 16, 20, 3), dtype=np.float32)
    tuned = tvm.compile(finalize(scheduled, tvm_target, TUNED_GRAPH), target=tvm_target)
    stock = tvm.compile(tuning_module(model, target, STOCK_GRAPH), target=tvm_target)
    results = []
    for ex in (tuned, stock):
        vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
        results.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-4)


def squeeze_excite(channels: int = 16, size: int = 8) -> tvm.IRModule:
    """selfie_segmenter's SE kernel: a 1x1 conv on the pooled 1x1 map, its sigmoid broadcast over the map."""
    pooled = te.placeholder((1, 1, 1, channels), name="pooled")
    weight = te.placeholder((1, 1, channels, channels), name="weight")
    fmap = te.placeholder((1, size, size, channels), name="fmap")
    excite = topi.sigmoid(topi.nn.conv2d_nhwc(pooled, weight, 1, 0, 1))
    out = topi.multiply(fmap, excite)
    return tvm.IRModule({"main": te.create_prim_func([pooled, weight, fmap, out])})


def test_a_broadcast_epilogue_is_skipped_with_its_reason_not_a_crash():
    sch = s_tir.Schedule(squeeze_excite())
    assert "broadcast" in skip_reason(sch) and "1x8x8x16" in skip_reason(sch)
    assert register_tile_designs(sch) == []
    assert skip_reason(s_tir.Schedule(conv_bias_relu())) is None


def test_the_tuner_leaves_an_untileable_kernel_to_the_default_space(caplog):
    plan = TaskPlan(tasks=[types.SimpleNamespace(task_name="fused_se", dispatched=[squeeze_excite()]),
                           types.SimpleNamespace(task_name="fused_pw", dispatched=[conv_bias_relu()])],
                    skipped=[])
    with tempfile.TemporaryDirectory() as work_dir, caplog.at_level(logging.INFO, logger="tuning.tune"):
        db = ms.database.JSONDatabase(work_dir=work_dir)
        assert untried_register_tile_tasks(db, plan) == [1]
    assert "fused_se skipped: its epilogue block" in caplog.text


def test_a_conv_whose_channels_fit_no_tile_is_skipped_not_a_crash(caplog):
    """The tiny model's last 1x1 conv has 3 output channels: no 16-wide tile fits, so it has no design, and a
    task without one stopped MetaSchedule's search ('design_spaces.empty()')."""
    narrow = conv_bias_relu(cout=3)
    assert "3 output channels are not a multiple of a tile's width (16)" in skip_reason(s_tir.Schedule(narrow))
    assert register_tile_designs(s_tir.Schedule(narrow)) == []
    plan = TaskPlan(tasks=[types.SimpleNamespace(task_name="fused_narrow", dispatched=[narrow]),
                           types.SimpleNamespace(task_name="fused_pw", dispatched=[conv_bias_relu()])],
                    skipped=[])
    with tempfile.TemporaryDirectory() as work_dir, caplog.at_level(logging.INFO, logger="tuning.tune"):
        assert untried_register_tile_tasks(ms.database.JSONDatabase(work_dir=work_dir), plan) == [1]
    assert "fused_narrow skipped: its 3 output channels" in caplog.text
