"""Any .tflite: a model file that is not in the registry goes through the CLI, compile, tune and the benchmark,
its spec read from the file and everything it produces keyed by its sha256."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.acquire import AUTO, resolve_model, sha256_of
from runtime.errors import ModelNotFoundError
from runtime.pipeline import load_segmenter
from runtime.processing import activate, preprocess
from runtime.registry import registry
from runtime.settings import RuntimeSettings
from runtime.tflite_graph import TFLiteGraph
from runtime.twin.graph import GraphBuilder
from runtime.twin.tflite_writer import serialise

from .conftest import REAL_MODELS, need_model
from .test_cli_errors import fails
from .tiny_models import tiny_file_model, tiny_segmenter


@pytest.fixture
def settings(tmp_path) -> RuntimeSettings:
    return RuntimeSettings(models_dir=None, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", REAL_MODELS)
def test_a_real_model_under_another_name_reads_as_the_registry_says(name, tmp_path, settings, astronaut):
    """Renamed, each real file is a file model; what the file says matches the registry, and so do its masks."""
    copy = tmp_path / f"my_{name}.tflite"
    shutil.copyfile(need_model(name), copy)
    spec = resolve_model(copy, settings=settings).spec
    known = registry().get(name)
    assert spec.name == f"file-{sha256_of(copy)[:12]}"
    assert (spec.input.height, spec.input.width, spec.input.extra) == (known.input.height, known.input.width,
                                                                       known.input.extra)
    assert spec.input.range == pytest.approx(known.input.range)
    assert (spec.output_kind, spec.num_classes, spec.output_shape) == (known.output_kind, known.num_classes,
                                                                        known.output_shape)
    assert [spec.class_index(c) for c in spec.person_classes] == [known.class_index(c) for c in known.person_classes]
    ours = load_segmenter(model_path=copy).segment(astronaut)
    theirs = load_segmenter(name).segment(astronaut)
    np.testing.assert_array_equal(ours.probabilities, theirs.probabilities)


@pytest.mark.parametrize("name", ["selfie_segmenter", "deeplab_v3"])
def test_normalisation_is_read_as_mediapipe_schema_reads_it(name):
    schema = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")
    graph = TFLiteGraph.load(need_model(name))
    index = next(i for i in range(graph.model.MetadataLength()) if graph.model.Metadata(i).Name() == b"TFLITE_METADATA")
    buf = graph.model.Buffers(graph.model.Metadata(index).Buffer()).DataAsNumpy().tobytes()
    unit = (schema.ModelMetadata.GetRootAsModelMetadata(buf, 0).SubgraphMetadata(0).InputTensorMetadata(0)
            .ProcessUnits(0))
    assert unit.OptionsType() == schema.ProcessUnitOptions.NormalizationOptions
    options = schema.NormalizationOptions()
    table = unit.Options()
    options.Init(table.Bytes, table.Pos)
    assert graph.input_normalization() == (options.Mean(0), options.Std(0))


def test_a_file_model_resolves_by_name_later_and_an_unseen_name_says_what_to_do(tmp_path, settings):
    path = tiny_file_model(tmp_path / "mine.tflite")
    first = resolve_model(path=path, settings=settings)
    again = resolve_model(first.spec.name, settings=settings)
    assert again.spec == first.spec and again.sha256() == first.sha256() and again.source == "cache"
    assert first.spec.output_shape == (1, 24, 20, 4) and first.spec.input.range == (0.0, 1.0)
    with pytest.raises(ModelNotFoundError, match="--model-path FILE.tflite"):
        resolve_model("file-000000000000", settings=settings)


def test_softmax_outputs_are_taken_as_probabilities(tmp_path, astronaut):
    """A model that ends in SOFTMAX already gives probabilities: they are not squashed a second time."""
    segmenter = load_segmenter(model_path=tiny_file_model(tmp_path / "soft.tflite", head="softmax"))
    seg = segmenter.segment(astronaut)
    assert seg.spec.output_kind == "probabilities"
    raw = segmenter.engine.run(preprocess(astronaut, seg.spec))[0]
    np.testing.assert_array_equal(activate(seg.class_scores, seg.spec), raw)
    # Bilinear weights sum to 1: the photo-size probabilities still sum to 1.
    np.testing.assert_allclose(seg.probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def _nchw_model(path: Path) -> Path:
    g = GraphBuilder(seed=3)
    g.mark_output(g.conv2d(g.input("image", (1, 3, 16, 16)), 4), "out")
    path.write_bytes(serialise(g, "channels-first input"))
    return path


def test_files_the_effects_cannot_use_are_one_line_errors(tmp_path, capsys, grace_hopper_path, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_CACHE_DIR", str(tmp_path / "cache"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    cases = {junk: "junk.tflite is not a TFLite model file",
             tiny_file_model(tmp_path / "classifier.tflite", head="classifier"):
                 "output (1, 4) (float32) is not a float32 mask (1, height, width, classes); the effects cannot use it",
             _nchw_model(tmp_path / "nchw.tflite"): "channels first? only NHWC is supported"}
    for path, message in cases.items():
        err = fails(capsys, "segment", str(grace_hopper_path), "--model-path", str(path), "--out", str(tmp_path))
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_model_tvm_cannot_import_lists_its_operators(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "build"))
    mystery = tiny_segmenter(tmp_path / "mystery.tflite", mystery_ops=3).path
    err = fails(capsys, "compile", "--model-path", str(mystery))
    assert "cannot convert to TVM: AnotherMysteryOp x1, MysteryOp x2" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_any_tflite_through_compile_segment_tune_and_benchmark(tmp_path, capsys, monkeypatch, grace_hopper_path):
    from benchmark.__main__ import main as benchmark_main
    from runtime.artifacts import LibraryMetadata
    from runtime.cli import main
    from runtime.target import host_target
    from tuning.database import read_records
    from tuning.records import record_set_dir

    for var, sub in (("CACHE", "cache"), ("BUILD", "build"), ("RESULTS", "results")):
        monkeypatch.setenv(f"SELFIE_TVM_{var}_DIR", str(tmp_path / sub))
    path = tiny_file_model(tmp_path / "mine.tflite")
    name = f"file-{sha256_of(path)[:12]}"
    target = host_target()

    assert main(["compile", "--model-path", str(path)]) == 0
    capsys.readouterr()
    assert (tmp_path / "build" / name / target.id / "default.so").is_file()
    default = LibraryMetadata.read(tmp_path / "build" / name / target.id / "default.json")
    assert (default.kind, default.model, default.model_sha256) == ("default", name, sha256_of(path))
    assert default.target_spec.id == target.id

    masks = {}
    for engine in ("tvm-default", "litert"):
        assert main(["segment", str(grace_hopper_path), "--model-path", str(path), "--engine", engine,
                     "--out", str(tmp_path / engine)]) == 0
        masks[engine] = {p.name: np.asarray(Image.open(p)) for p in sorted((tmp_path / engine).glob("*.mask.*.png"))}
    capsys.readouterr()
    assert list(masks["tvm-default"]) == [f"grace_hopper.mask.class{i}.png" for i in range(4)]
    # The file's own model ran on TVM: its masks, photo-sized, are LiteRT's on the same file (within rounding).
    photo_hw = np.asarray(Image.open(grace_hopper_path)).shape[:2]
    for mask_name, tvm_mask in masks["tvm-default"].items():
        lite_mask = masks["litert"][mask_name]
        assert tvm_mask.shape == lite_mask.shape == photo_hw and tvm_mask.std() > 0, mask_name
        assert np.abs(tvm_mask.astype(int) - lite_mask).max() <= 2, mask_name

    # The smallest tune that measures: one batch of one kernel, kept in the committed set of this ISA level
    # and built into the model's tuned library.
    assert main(["tune", "--model-path", str(path), "--budget", "4", "--per-iter", "4", "--only", "fused_conv2d_",
                 "--search", "small"]) == 0
    capsys.readouterr()
    records = read_records(record_set_dir(target))
    assert any(r.cost_s is not None for r in records)  # at least one trial measured
    tuned = LibraryMetadata.read(tmp_path / "build" / name / target.id / "tuned.json")
    assert tuned.trials >= 4 and tuned.kernels - len(tuned.untuned_kernels) == 1

    report = tmp_path / "report"
    assert benchmark_main(["--model-path", str(path), "--engines", "litert,tvm-default", "--threads", "1",
                           "--runs", "6", "--warmup", "1", "--no-profile", "--out", str(report)]) == 0
    assert (report / "report.md").read_text().startswith(f"# Benchmark: {name}")
    engines = {line.split(",")[0] for line in (report / "latency_stats.csv").read_text().splitlines()[1:]}
    assert engines == {"litert", "tvm-default"}


def test_the_benchmark_takes_model_path_as_its_model():
    import argparse

    from benchmark.options import add_options

    parser = argparse.ArgumentParser()
    add_options(parser.add_argument)
    assert parser.parse_args(["--model-path", "mine.tflite"]).model == "mine.tflite"
    assert parser.parse_args([]).model == AUTO
