"""The hand-written depthwise schedule: what it computes, how it competes with records, how a build applies it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from runtime.acquire import resolve_model
from runtime.artifacts import LibraryMetadata
from runtime.target import host_target, portable_target
from tuning.build import apply_records, export, tuning_module
from tuning.database import build_cpu
from tuning.default_schedule import DEFAULT_SCHEDULE_ANNOTATION
from tuning.depthwise import PAD_BLOCK, DepthwiseShape, DepthwiseTile, depthwise_shape, tiles
from tuning.hand_schedules import (
    DEFAULT,
    DEPTHWISE,
    HandChoice,
    KernelTiming,
    applied,
    choose,
    hand_scheduled,
    measure,
    read_choices,
    updated_choices,
    workload_key,
    write_choices,
)
from tuning.records import Provenance, RecordSet, isa_level, read_provenance
from tuning.tasks import plan_tasks

from .conftest import need_model
from .tiny_models import simple_records, tiny_depthwise, tiny_depthwise_real_shapes

pytestmark = pytest.mark.slow  # compiles kernels and two tiny libraries (~10 s)
LANES = {"avx512": 16, "avx2": 8}


@pytest.fixture(scope="module")
def target():
    return host_target()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_depthwise(tmp_path_factory.mktemp("tiny_dw") / "tiny_dw.tflite")


@pytest.fixture(scope="module")
def mod(model, target):
    return tuning_module(model, target)


@pytest.fixture(scope="module")
def depthwise(mod, target):
    """name -> kernel module of the tiny model's two depthwise kernels (stride 1 + ReLU, stride 2)."""
    kernels = {t.task_name: t.dispatched[0] for t in plan_tasks(mod, target.to_tvm()).tasks
               if depthwise_shape(t.dispatched[0]["main"]) is not None}
    assert sorted(depthwise_shape(k["main"]).stride for k in kernels.values()) == [1, 2]
    return kernels


def _run(mod: tvm.IRModule, target, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype))
            for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]
    tvm.tirx.build(mod, target=target.to_tvm())(*args)
    return args[-1].numpy()


def _has_block(mod: tvm.IRModule, name: str) -> bool:
    try:
        s_tir.Schedule(mod).get_sblock(name)
    except s_tir.schedule.ScheduleError:
        return False
    return True


def test_every_tile_computes_the_unscheduled_kernel_without_a_padded_copy(depthwise, target):
    for name, kernel in depthwise.items():
        assert _has_block(kernel, PAD_BLOCK)  # what TVM's lowering gives: a padded copy of the input
        expected = _run(kernel, target)
        shape = depthwise_shape(kernel["main"])
        grid = tiles(shape, LANES[target.vector_isa])
        assert len(grid) == 4, (name, shape)
        for tile in grid:
            scheduled = hand_scheduled(kernel, tile)
            assert not _has_block(scheduled, PAD_BLOCK), (name, tile)
            np.testing.assert_allclose(_run(scheduled, target), expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} {tile}")


def test_the_real_models_other_shapes_get_tiles_without_tails_that_compute_the_kernel(tmp_path, target):
    """5x5 taps, dilation 2, 15-pixel rows (neither 4 nor 8 divides them) and 24 channels: each tile computes
    the unscheduled kernel without a padded copy."""
    lanes = LANES[target.vector_isa]
    mod = tuning_module(tiny_depthwise_real_shapes(tmp_path / "dw.tflite"), target)
    kernels = [t.dispatched[0] for t in plan_tasks(mod, target.to_tvm()).tasks]
    shapes = {depthwise_shape(k["main"]): k for k in kernels if depthwise_shape(k["main"]) is not None}
    assert sorted((s.taps, s.dilation, s.width, s.channels) for s in shapes) == [(3, 2, 15, 24), (5, 1, 15, 24)]
    for shape, kernel in shapes.items():
        grid = tiles(shape, lanes)
        # 24 channels: one vector on AVX2 (two do not divide them), half a vector on AVX-512; rows of 5 pixels.
        assert [(t.lanes, t.w_tile) for t in grid] == [(8, 5)], (shape, grid)
        expected = _run(kernel, target)
        scheduled = hand_scheduled(kernel, grid[0])
        assert not _has_block(scheduled, PAD_BLOCK), shape
        np.testing.assert_allclose(_run(scheduled, target), expected, rtol=1e-5, atol=1e-5, err_msg=str(shape))


def test_tiles_take_the_widest_row_tile_that_divides_the_row():
    assert [t.w_tile for t in tiles(DepthwiseShape(33, 33, 96, 1), 8)] == [3, 3]  # deeplab_v3: 8 and 16 channels
    assert {t.w_tile for t in tiles(DepthwiseShape(65, 65, 72, 1), 8)} == {5}
    assert {t.w_tile for t in tiles(DepthwiseShape(32, 32, 88, 1), 8)} == {4, 8}
    assert tiles(DepthwiseShape(13, 13, 16, 1), 8) == []  # a prime row: no tile without a tail


def test_only_depthwise_kernels_the_schedule_handles_are_taken(mod, target, depthwise):
    others = [t.dispatched[0] for t in plan_tasks(mod, target.to_tvm()).tasks if t.task_name not in depthwise]
    assert others and all(depthwise_shape(k["main"]) is None for k in others)
    # AVX-512, 24 channels and 6 pixels: half a vector of channels, the whole row.
    assert tiles(DepthwiseShape(8, 6, 24, 1), 16) == [DepthwiseTile(8, 6)]
    assert tiles(DepthwiseShape(8, 8, 12, 1), 16) == []  # 12 channels: no vector of 8 or more divides them
    assert tiles(DepthwiseShape(8, 8, 12, 1), 8) == []  # nor on AVX2: no half-vector (4-lane) tiles there


def test_the_hand_schedule_is_chosen_only_where_it_measured_faster():
    timings = [KernelTiming("faster", "1", "8x8x32 s1", record_us=100.0, hand_us={"c16w4": 60.0, "c16w8": 70.0}),
               KernelTiming("slower", "2", "8x8x32 s1", record_us=100.0, hand_us={"c16w4": 130.0}),
               KernelTiming("a_tie", "3", "8x8x32 s1", record_us=100.0, hand_us={"c16w4": 99.0}),
               KernelTiming("no_record", "4", "8x8x32 s1", record_us=None, hand_us={"c32w8": 50.0})]
    chosen = {c.kernel: c for c in choose(timings, cpu="somecpu", threads=2)}
    assert sorted(chosen) == ["faster", "no_record"]
    assert chosen["faster"].tile == {"lanes": 16, "w_tile": 4} and chosen["faster"].ratio == pytest.approx(0.6)
    assert chosen["no_record"].tile == {"lanes": 32, "w_tile": 8} and chosen["no_record"].ratio is None


def test_the_default_schedule_is_chosen_where_it_beat_the_record_and_the_tiles():
    timings = [KernelTiming("gate", "1", "-", record_us=500.0, hand_us={"default": 40.0}),
               KernelTiming("dw", "2", "8x8x32 s1", record_us=100.0, hand_us={"c16w4": 60.0, "default": 50.0}),
               KernelTiming("conv", "3", "-", record_us=100.0, hand_us={"default": 300.0})]
    chosen = {c.kernel: c for c in choose(timings, cpu="somecpu", threads=2)}
    assert sorted(chosen) == ["dw", "gate"]
    assert (chosen["gate"].schedule, chosen["gate"].tile, chosen["gate"].ratio) == (DEFAULT, {}, 0.08)
    assert chosen["dw"].schedule == DEFAULT
    # read back from hand_schedules.json, and old files without the field are depthwise choices
    assert HandChoice(**{k: v for k, v in asdict(chosen["dw"]).items() if k != "schedule"}).schedule == DEPTHWISE
    # Without a record the default schedule is the build's fallback anyway: never pinned, a tile must beat it.
    no_record = [KernelTiming("gate", "1", "-", record_us=None, hand_us={"default": 40.0}),
                 KernelTiming("dw_tile_wins", "2", "8x8x32 s1", None, {"c16w4": 30.0, "default": 50.0}),
                 KernelTiming("dw_tie", "3", "8x8x32 s1", None, {"c16w4": 49.0, "default": 50.0})]
    chosen = {c.kernel: c for c in choose(no_record, cpu="somecpu", threads=2)}
    assert sorted(chosen) == ["dw_tile_wins"] and chosen["dw_tile_wins"].tile == {"lanes": 16, "w_tile": 4}


def test_a_build_gives_the_default_schedule_to_a_kernel_chosen_for_it(mod, depthwise, target, tmp_path):
    records = simple_records(mod, target, tmp_path / "records")
    name = sorted(depthwise)[0]
    choice = HandChoice(name, workload_key(depthwise[name]), {}, 1.0, 2.0, target.mcpu, 2, DEFAULT)
    built = tvm.IRModule({"main": apply_records(mod, target.to_tvm(), records, hand=[choice])[name]})
    assert DEFAULT_SCHEDULE_ANNOTATION in built.script()
    assert DEFAULT_SCHEDULE_ANNOTATION not in tvm.IRModule(
        {"main": apply_records(mod, target.to_tvm(), records)[name]}).script()  # its record otherwise


def test_measuring_one_models_kernels_keeps_the_other_models_choices():
    def choice(kernel: str, key: str) -> HandChoice:
        return HandChoice(kernel, key, {"lanes": 8, "w_tile": 4}, 1.0, 2.0, "znver3", 2)

    twin, re_measured, lost = choice("twin_dw", "k1"), choice("dw_a", "k2"), choice("dw_b", "k3")
    timings = [KernelTiming("dw_a", "k2", "8x8x32 s1", 100.0, {"c8w4": 60.0}),
               KernelTiming("dw_b", "k3", "8x8x32 s1", 100.0, {"c8w4": 130.0})]  # its record won this time
    fresh = choice("dw_a", "k2")
    assert updated_choices([twin, re_measured, lost], timings, [fresh]) == [twin, fresh]


def test_a_build_gives_the_hand_schedule_to_the_chosen_kernels_only(model, mod, depthwise, target, tmp_path):
    records = simple_records(mod, target, tmp_path / "records")
    chosen_name, kept_name = sorted(depthwise)
    tile = tiles(depthwise_shape(depthwise[chosen_name]["main"]), LANES[target.vector_isa])[0]
    choice = HandChoice(chosen_name, workload_key(depthwise[chosen_name]), tile.as_dict(), 1.0, 2.0, target.mcpu, 2)

    built = apply_records(mod, target.to_tvm(), records, hand=[choice])
    assert not _has_block(tvm.IRModule({"main": built[chosen_name]}), PAD_BLOCK)
    kept = tvm.IRModule({"main": built[kept_name]})
    assert _has_block(kept, PAD_BLOCK) and "T.parallel" in kept.script()  # its record, not the hand schedule

    # The whole library, through the product's export: metadata names the hand-scheduled kernel, and
    # the model computes what the library without the hand schedule computes.
    write_choices(records, [choice])
    record_set = RecordSet(records, Provenance(isa=isa_level(target)))
    x = tvm.runtime.tensor(np.random.default_rng(5).random((1, 16, 16, 3), dtype=np.float32))
    outputs = {}
    for kind, out in (("with", tmp_path / "with"), ("without", tmp_path / "without"), ("untuned", tmp_path / "d")):
        if kind == "without":
            (records / "hand_schedules.json").unlink()
        # "without" ranks by a farm's CPU with no record here: the ISA level's best, and its metadata says whose.
        ranked_by = "farm-cpu" if kind == "without" else None
        lib = export(model, target, "default" if kind == "untuned" else "tuned", records=record_set,
                     out_root=out, warn=False, ranked_by=ranked_by)
        meta = LibraryMetadata.read(lib.with_suffix(".json"))
        assert meta.hand_scheduled_kernels == ([chosen_name] if kind == "with" else [])
        assert meta.records_ranked_by == {"with": build_cpu(target), "without": "farm-cpu", "untuned": None}[kind]
        vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
        outputs[kind] = vm["main"](x).numpy()
    np.testing.assert_allclose(outputs["with"], outputs["untuned"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["with"], outputs["without"], rtol=1e-5, atol=1e-5)


def test_measuring_times_the_record_and_every_tile_of_each_depthwise_kernel(mod, depthwise, target, tmp_path):
    records = simple_records(mod, target, tmp_path / "records")
    db = ms.database.JSONDatabase(work_dir=str(records), allow_missing=False)
    timings = measure(mod, target.to_tvm(), db, LANES[target.vector_isa], rounds=1)
    assert sorted(t.kernel for t in timings) == sorted(depthwise)
    for t in timings:
        assert t.record_us > 0 and len(t.hand_us) == 4 and all(us > 0 for us in t.hand_us.values())
        assert t.key == workload_key(depthwise[t.kernel])
    # with the default schedule as a candidate: every kernel, the depthwise ones with their tiles too
    timings = {t.kernel: t for t in measure(mod, target.to_tvm(), db, LANES[target.vector_isa], rounds=1, cores=2)}
    assert sorted(timings) == sorted(t.task_name for t in plan_tasks(mod, target.to_tvm()).tasks)
    assert all(DEFAULT in t.hand_us and t.record_us > 0 for t in timings.values())
    assert all(len(timings[name].hand_us) == 5 for name in depthwise)


COMMITTED_SETS = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "results" / "tuning")
                        .glob("*/hand_schedules.json"))


@pytest.mark.parametrize("records", COMMITTED_SETS, ids=lambda p: p.name)
def test_every_committed_choice_schedules_a_kernel_of_a_model_of_its_set(records):
    """Keys depend on the kernel's computation only: the choices of a set apply to the builds of the models it
    was tuned for (its provenance's `models`: the twin, real models), at that ISA level, for a generic CPU of
    the level and for this host's CPU (when it has that level)."""
    choices = read_choices(records)
    provenance = read_provenance(records, records.name)
    models = [resolve_model(name, path=None if name == "selfie_multiclass_twin" else need_model(name))
              for name in provenance.models]
    host = host_target()
    targets = [portable_target(level=records.name)] + ([host] if isa_level(host) == records.name else [])
    chosen = {c.key for c in choices}
    for target in targets:
        matched: set[str] = set()
        for model in models:
            mod = tuning_module(model, target, provenance.graph_options)
            keys = {workload_key(t.dispatched[0]) for t in plan_tasks(mod, target.to_tvm()).tasks}
            assert len(applied(mod, target.to_tvm(), choices)) == len(chosen & keys), model.spec.name
            matched |= chosen & keys
        unmatched = sorted(c.kernel for c in choices if c.key not in matched)
        assert not unmatched, f"{records.name} choices match no kernel of its models for {target.mcpu}: {unmatched}"


def test_a_key_ignores_the_weight_prepack_attribute(mod):
    kernel = next(t.dispatched[0] for t in plan_tasks(mod, host_target().to_tvm()).tasks
                  if depthwise_shape(t.dispatched[0]["main"]) is not None)
    marked = tvm.IRModule({"main": kernel["main"].with_attr("layout_free_buffers", [1])})
    assert workload_key(marked) == workload_key(kernel)
    assert workload_key(tvm.IRModule({"main": kernel["main"].with_attr("other", 1)})) != workload_key(kernel)


def test_a_record_is_timed_as_the_build_runs_it_without_re_blocking_its_weights(target):
    """A record tuned with weight prepacking re-blocks its weights in a block of its own, which a build runs once,
    on the constants: `measure` times the record without that block, on weights already re-blocked, as MetaSchedule
    timed it (with it, a 1x1 conv on a 1x1 map measured 30.6 us instead of 3.0 and lost to the default schedule)."""
    from tvm import te, topi

    from tuning.hand_schedules import record_as_built
    from tuning.register_tile import CONV_BLOCK, tile_pointwise_conv

    data, weight = te.placeholder((1, 4, 12, 32), name="data"), te.placeholder((1, 1, 32, 48), name="weight")
    func = te.create_prim_func([data, weight, topi.nn.conv2d_nhwc(data, weight, 1, 0, 1)])
    kernel = tvm.IRModule({"main": func.with_attr("layout_free_buffers", [1])})
    sch = s_tir.Schedule(kernel)
    tile_pointwise_conv(sch, sch.get_sblock(CONV_BLOCK), px=4, ch=16, channel_tiles=1)
    rewrite = ms.postproc.RewriteLayout()
    rewrite._initialize_with_tune_context(ms.TuneContext(mod=kernel, target=target.to_tvm()))
    assert rewrite.apply(sch) and "layout_rewrite_preproc" in sch.mod.script()

    built = record_as_built(sch.mod)
    shapes = [[int(d) for d in a.shape] for a in ms.arg_info.ArgInfo.from_prim_func(built["main"])]
    assert shapes[:2] == [[1, 4, 12, 32], [3, 32, 16]]  # the weights come re-blocked, in 16-channel panels
    assert "= weight[" in sch.mod.script() and "= weight[" not in built.script()  # and are not copied again
