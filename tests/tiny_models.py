"""Small real .tflite files written with the project's own TFLite writer, for fast TVM tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runtime.acquire import ResolvedModel
from runtime.registry import InputSpec, registry
from runtime.twin.graph import GraphBuilder
from runtime.twin.tflite_writer import serialise


def _three_class_model(name: str, path: Path, height: int, width: int) -> ResolvedModel:
    """A test model file resolved with the twin's spec, resized to its input and 3 classes ("b" is the person)."""
    spec = dataclasses.replace(registry().get("selfie_multiclass_twin"), name=name, synthetic=True,
                               input=InputSpec(height, width, "NHWC", (0.0, 1.0)),
                               classes=("a", "b", "c"), person_classes=("b",), hair_class=None)
    return ResolvedModel(spec, path, "explicit")


def tiny_segmenter(path: Path, *, mystery_ops: int = 0, seed: int = 7) -> ResolvedModel:
    """32x32 input, two conv layers and a classifier: 3 classes of logits (weights from `seed`)."""
    g = GraphBuilder(seed=seed)
    x = g.input("image", (1, 32, 32, 3))
    y = g.conv2d(x, 16, 3, 2, relu=True)
    y = g.depthwise(y, 3, relu=True)
    for i in range(mystery_ops):
        y = g.custom("MysteryOp" if i % 2 == 0 else "AnotherMysteryOp", y)
    y = g.conv2d(y, 16, relu=True)
    y = g.transpose_conv(y, 8, kernel=2, stride=2)
    g.mark_output(g.conv2d(y, 3), "logits")
    path.write_bytes(serialise(g, "tiny test model"))
    return _three_class_model("tiny", path, 32, 32)


def tiny_file_model(path: Path, *, head: str = "mask", seed: int = 11) -> Path:
    """A .tflite of a shape the registry does not know (48x40 in, masks at half size), for `--model-path`.

    head: "mask" -> 4 classes of logits (1, 24, 20, 4); "softmax" -> the same through SOFTMAX;
    "classifier" -> one vector (1, 4) that no effect can use.
    """
    g = GraphBuilder(seed=seed)
    x = g.input("image", (1, 48, 40, 3))
    y = g.conv2d(x, 8, 3, 2, relu=True)
    y = g.conv2d(y, 4)
    if head == "softmax":
        y = g.softmax(y)
    elif head == "classifier":
        y = g.reshape(g.reduce_sum(g.reduce_sum(y, 1), 2), (1, 4))
    elif head != "mask":
        raise ValueError(f"unknown head {head!r}")
    g.mark_output(y, head)
    path.write_bytes(serialise(g, f"tiny {head} model, not in the registry"))
    return path


def tiny_shared_anchor(path: Path, *, seed: int = 5) -> ResolvedModel:
    """Two kernels with the same 1x1 convolution and different epilogues (ReLU; residual add): one
    anchor-block group, two structurally different kernels. 16x16x3 in, 3 classes of logits out."""
    g = GraphBuilder(seed=seed)
    x = g.input("image", (1, 16, 16, 3))
    y = g.conv2d(x, 3, relu=True)
    g.mark_output(g.add(g.conv2d(y, 3), x), "logits")
    path.write_bytes(serialise(g, "tiny model with a shared anchor block"))
    return _three_class_model("tiny_pair", path, 16, 16)


def tiny_depthwise(path: Path, *, seed: int = 3) -> ResolvedModel:
    """Two 3x3 depthwise convs (stride 1 with ReLU, stride 2) between 1x1 convs: 16x16x3 in, 3 classes out."""
    g = GraphBuilder(seed=seed)
    x = g.input("image", (1, 16, 16, 3))
    y = g.conv2d(x, 32, relu=True)
    y = g.depthwise(y, 3, relu=True)
    y = g.depthwise(y, 3, stride=2)
    g.mark_output(g.conv2d(y, 3), "logits")
    path.write_bytes(serialise(g, "tiny model with depthwise convs"))
    return _three_class_model("tiny_dw", path, 16, 16)


def tiny_depthwise_real_shapes(path: Path, *, seed: int = 4) -> ResolvedModel:
    """Depthwise shapes of the real models the first hand schedule skipped, 15x15x3 in, 3 classes out: 5x5 taps
    (selfie_segmenter), dilation 2 (deeplab_v3), rows of 15 pixels that neither 4 nor 8 divides (deeplab_v3's
    33, 65, 129) and 24 channels, not a multiple of AVX-512's 16 lanes."""
    g = GraphBuilder(seed=seed)
    x = g.input("image", (1, 15, 15, 3))
    y = g.conv2d(x, 24, relu=True)
    y = g.depthwise(y, 5, relu=True)
    y = g.depthwise(y, 3, dilation=2)
    g.mark_output(g.conv2d(y, 3), "logits")
    path.write_bytes(serialise(g, "tiny model with the real models' other depthwise shapes"))
    return _three_class_model("tiny_dw_real", path, 15, 15)


def simple_records(mod, target, directory: Path, *, mcpu: str | None = None, seconds: float = 1e-3) -> Path:
    """A real JSONDatabase holding one record per kernel of `mod` (a tuning module): its first block's
    rows in parallel (a schedule that leaves a visible mark, `T.parallel`, and keeps TVM's padded
    copy), measured `seconds` on `mcpu` (default: the target's own CPU)."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from tuning.tasks import plan_tasks

    directory.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(directory), allow_missing=True)
    tvm_target = target.to_tvm()
    measured_on = dataclasses.replace(target, mcpu=mcpu).to_tvm() if mcpu else tvm_target
    for task in plan_tasks(mod, tvm_target).tasks:
        kernel = task.dispatched[0]
        sch = s_tir.Schedule(kernel)
        first = sch.get_child_blocks(sch.get_sblock("root"))[0]
        sch.parallel(sch.get_loops(first)[1])
        db.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, db.commit_workload(kernel), [seconds], measured_on,
            ms.arg_info.ArgInfo.from_prim_func(kernel["main"])))
    return directory
