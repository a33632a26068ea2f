"""benchmark/op_profile.py: LiteRT's per-operator profile from single-operator models, and the gap table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from ai_edge_litert.interpreter import Interpreter

from benchmark.single_op import SingleOpModels, signature
from runtime.engines.litert import interpreter

from .conftest import need_model
from .printed_numbers import printed_quotient_bounds
from .tiny_models import tiny_depthwise, tiny_segmenter, tiny_shared_anchor

# LiteRT warns that keeping every intermediate tensor is for debugging: here it is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`:UserWarning")


def _inside_the_full_model(path, rng) -> dict[str, np.ndarray]:
    """Every tensor of the full model after one run, by name (LiteRT keeping its intermediates)."""
    full = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True)
    full.allocate_tensors()
    for detail in full.get_input_details():
        full.set_tensor(detail["index"], rng.random(detail["shape"]).astype(detail["dtype"]))
    full.invoke()
    return {d["name"]: full.get_tensor(d["index"]) for d in full.get_tensor_details() if d["shape"].size}


def _check_every_operator(path) -> int:
    """Each operator's single-operator model, fed what it read inside the full model, outputs what it wrote
    there; returns how many operators ran."""
    graph = SingleOpModels(path.read_bytes())
    tensors = _inside_the_full_model(path, np.random.default_rng(1))
    ran = 0
    for i, op in enumerate(graph.ops):
        if graph.is_folded(i):
            continue
        alone = interpreter(graph.single_op_model(i), 1)
        for detail in alone.get_input_details():
            alone.set_tensor(detail["index"], tensors[detail["name"]])
        alone.invoke()
        (out,) = alone.get_output_details()
        assert tuple(out["shape"]) == op.output_shapes[0], f"operator {i} {op.name}"
        np.testing.assert_allclose(alone.get_tensor(out["index"]), tensors[out["name"]], rtol=1e-4, atol=1e-5,
                                   err_msg=f"operator {i} {op.name}")
        ran += 1
    return ran


@pytest.mark.parametrize("make", [tiny_segmenter, tiny_depthwise, tiny_shared_anchor])
def test_a_single_operator_model_computes_what_the_operator_computes_in_the_model(make, tmp_path):
    model = make(tmp_path / "m.tflite")
    assert _check_every_operator(model.path) == len(SingleOpModels(model.path.read_bytes()))


def test_every_operator_of_the_twin_runs_alone_and_agrees_with_the_model(twin):
    graph = SingleOpModels(twin.path.read_bytes())
    assert len(graph) > 150
    assert _check_every_operator(twin.path) == len(graph)


def test_every_operator_of_a_real_model_runs_alone():
    """fp16 weights behind DEQUANTIZE stay constant, and the MediaPipe custom op runs alone."""
    graph = SingleOpModels(need_model("selfie_segmenter").read_bytes())
    folded = [i for i in range(len(graph)) if graph.is_folded(i)]
    assert folded and all(graph.ops[i].name == "DEQUANTIZE" for i in folded)
    # one row for all of them in the gap table; the operators they feed stay groups of their own
    assert {graph.group_signature(graph.groups[i]).text for i in folded} == {"dequantize-weights"}
    assert all(graph.groups[i] == i for i, op in enumerate(graph.ops) if op.name == "CONV_2D")
    names = set()
    rng = np.random.default_rng(0)
    for i, op in enumerate(graph.ops):
        if i in folded:
            continue
        alone = interpreter(graph.single_op_model(i), 1)
        assert all(d["dtype"] == np.float32 for d in alone.get_input_details())  # weights are not inputs
        for detail in alone.get_input_details():
            alone.set_tensor(detail["index"], rng.random(detail["shape"]).astype(np.float32))
        alone.invoke()
        assert tuple(alone.get_output_details()[0]["shape"]) == op.output_shapes[0]
        names.add(op.name)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "Convolution2DTransposeBias"} <= names
    (transposed,) = [op for op in graph.ops if op.name == "Convolution2DTransposeBias"]
    assert transposed.macs == 128 * 128 * 16 * 2 * 2 * 1  # input pixels x channels x taps x outputs


def test_signatures_and_groups_follow_what_tvm_fuses(tmp_path):
    graph = SingleOpModels(tiny_shared_anchor(tmp_path / "pair.tflite").path.read_bytes())
    # conv + ReLU; conv, then the residual ADD that TVM fuses into it
    assert [op.name for op in graph.ops] == ["CONV_2D", "CONV_2D", "ADD"]
    assert graph.groups == [0, 1, 1]
    assert signature(graph.ops[0]).text == "conv1x1 in 1x16x16x3 w 3x1x1x3 s1"
    dw = SingleOpModels(tiny_depthwise(tmp_path / "dw.tflite").path.read_bytes())
    assert [signature(op).text for op in dw.ops if op.name == "DEPTHWISE_CONV_2D"] == [
        "depthwise3x3 in 1x16x16x32 w 1x3x3x32 s1", "depthwise3x3 in 1x16x16x32 w 1x3x3x32 s2"]


def test_interleaved_rounds_rotate_and_consecutive_runs_stay_together():
    from benchmark.op_profile import CONSECUTIVE, INTERLEAVED, medians

    for order, expected in [(INTERLEAVED, "abc" + "bca" + "cab" + "abc"), (CONSECUTIVE, "aaaa" + "bbbb" + "cccc")]:
        calls: list[str] = []
        timed = medians({k: (lambda k=k, calls=calls: calls.append(k)) for k in "abc"}, repeats=4, warmup=1,
                        order=order)
        assert "".join(calls) == "abc" + expected and set(timed) == set("abc")


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory):
    from runtime.target import host_target
    from tuning.build import export

    root = tmp_path_factory.mktemp("op_profile")
    model = tiny_segmenter(root / "tiny.tflite")
    return model, export(model, host_target(), "default", out_root=root)


@pytest.mark.parametrize(("model_name", "graph_name"), [
    ("tiny", "stock"), ("tiny", "tuned"), ("selfie_multiclass_twin", "stock"), ("selfie_multiclass_twin", "tuned"),
    ("selfie_segmenter", "tuned")])
def test_every_convolution_kernel_has_the_signature_of_its_operator(tiny_library, model_name, graph_name):
    """Stock graph: TVM's NCHW conv2d_transpose; tuned graph: the sub-pixel kernel, NHWC (the twin's
    TRANSPOSE_CONV) or NCHW (MediaPipe's custom op in selfie_segmenter, whose weights are fp16)."""
    from benchmark.kernel_signature import kernel_signatures
    from runtime.acquire import resolve_model
    from runtime.target import host_target
    from tuning.importer import STOCK_GRAPH, TUNED_GRAPH

    if model_name == "selfie_segmenter":
        need_model(model_name)
    model = tiny_library[0] if model_name == "tiny" else resolve_model(model_name)
    graph = {"stock": STOCK_GRAPH, "tuned": TUNED_GRAPH}[graph_name]
    kernels = kernel_signatures(model, host_target(), graph.as_dict())
    convolutions = {s.text for s in kernels.values() if s.is_convolution}
    ops = {signature(op).text for op in SingleOpModels(model.path.read_bytes()).ops if signature(op).is_convolution}
    assert any(text.startswith("transpose-conv") for text in ops)
    assert len(ops) >= 5 and convolutions == ops


def test_the_gap_table_joins_every_convolution_of_a_built_library(tiny_library):
    from benchmark import gap_table
    from benchmark.op_profile import litert_profile, tvm_profile

    model, library = tiny_library
    lite = litert_profile(model, 1, "native", repeats=2, warmup=1)
    kernels = tvm_profile(model, library, 1, repeats=2)
    gap = gap_table.gap_table(gap_table.litert_groups(lite.ops), kernels)
    convs = gap[gap.signature.isin({s for s in lite.ops.signature if " w " in s})]
    assert len(convs) == 5  # the tiny model's five convolutions, all of different shapes
    assert (convs.litert_ms > 0).all() and (convs.tvm_ms > 0).all() and (convs.litert_calls >= 1).all()
    # every TVM convolution kernel found its LiteRT row, and every millisecond of both sides is in the table
    conv_kernels = kernels[kernels.kernel.str.contains("conv2d")]
    assert set(conv_kernels.signature) <= set(convs.signature)
    assert gap.tvm_ms.sum() == pytest.approx(kernels.ms.sum())
    assert gap.litert_ms.sum() == pytest.approx(lite.ops_ms)
    kinds = gap_table.by_kind(gap).set_index("kind")
    # Each kind's row sums its kernels' rows of the gap table; the total row sums every row.
    for kind, rows in gap.groupby("kind"):
        assert kinds.loc[kind, "tvm_ms"] == pytest.approx(rows.tvm_ms.sum())
        assert kinds.loc[kind, "litert_ms"] == pytest.approx(rows.litert_ms.sum())
    assert kinds.loc["total", "tvm_ms"] == pytest.approx(gap.tvm_ms.sum())
    assert kinds.loc["total", "gap_ms"] == pytest.approx(gap.tvm_ms.sum() - gap.litert_ms.sum())


def test_the_cli_writes_its_files_and_names_isa_and_threads(tiny_library, tmp_path, monkeypatch, capsys):
    from benchmark.op_profile import GAP_CSV, KINDS_CSV, MARKDOWN, OPS_CSV, main

    model, library = tiny_library
    monkeypatch.setattr("runtime.acquire.resolve_model", lambda name, **_: model)
    out = tmp_path / "out"
    assert main(["--model", "tiny", "--threads", "1", "--litert-isa", "avx2", "--repeats", "2", "--warmup", "0",
                 "--order", "consecutive", "--library", str(library), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {OPS_CSV, GAP_CSV, KINDS_CSV, MARKDOWN}
    text = (out / MARKDOWN).read_text()
    ops = pd.read_csv(out / OPS_CSV)
    assert len(ops) == 5 and set(ops.isa) == {"avx2"} and set(ops.order) == {"consecutive"} and (ops.ms > 0).all()
    assert set(ops.threads) == {1} and str(library) in text
    # The page states what its CSVs hold: LiteRT's operators (how many, their summed time) and the TVM total.
    lite = re.search(r"LiteRT whole model ([\d.]+) ms; sum of its (\d+) operators timed alone ([\d.]+) ms "
                     r"\(sum / whole = ([\d.]+)\)", text)
    whole_ms, count, ops_ms, share = float(lite[1]), int(lite[2]), float(lite[3]), float(lite[4])
    assert count == len(ops) and ops_ms == pytest.approx(ops.ms.sum(), abs=1e-3)
    low, high = printed_quotient_bounds(ops_ms, whole_ms)  # both times printed to 0.001 ms, the share to 0.01
    assert whole_ms > 0 and low <= share <= high
    total = pd.read_csv(out / KINDS_CSV).set_index("kind").loc["total"]
    tvm = re.search(r"TVM kernels ([\d.]+) ms vs LiteRT operators ([\d.]+) ms", text)
    assert float(tvm[1]) == pytest.approx(total.tvm_ms, abs=1e-3) and float(tvm[1]) > 0
    assert float(tvm[2]) == pytest.approx(total.litert_ms, abs=1e-3) == pytest.approx(ops_ms, abs=1e-3)
    assert "| conv1x1" in capsys.readouterr().out


def test_a_missing_or_foreign_library_is_one_clear_error_and_writes_nothing(tiny_library, tmp_path, monkeypatch,
                                                                           capsys):
    from benchmark.op_profile import main

    model, library = tiny_library
    other = tiny_segmenter(tmp_path / "other.tflite", seed=8)  # same shapes, other weights: another model file
    out = tmp_path / "out"
    for resolved, lib, message in [(model, tmp_path / "nope.so", "nope.so and its metadata nope.json"),
                                   (other, library, "rebuild it with `selfie-tvm compile`")]:
        monkeypatch.setattr("runtime.acquire.resolve_model", lambda name, resolved=resolved, **_: resolved)
        assert main(["--model", "tiny", "--library", str(lib), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


@pytest.mark.parametrize(("kernel", "kind"), [
    ("fused_resize2d1_add3", "resize"), ("transpose2", "transpose"), ("fused_avg_pool2d51", "avg-pool"),
    ("fused_broadcast_to_concatenate1", "concatenate"), ("fused_reshape3_add2", "add"),
    ("broadcast_to4", "broadcast"), ("fused_reshape6_transpose4_reshape7_transpose51", "reshape"),
    ("fused_reshape_transpose1", "reshape"), ("fused_expand_dims_squeeze_add1", "add")])
def test_a_kernel_is_named_by_its_first_operator_that_does_more_than_re_index(kernel, kind):
    """deeplab_v3's concatenation, with its pooled branch's broadcast fused in front, pairs with LiteRT's
    CONCATENATION, not with a broadcast LiteRT does not have."""
    from benchmark.kernel_signature import _first_operator

    assert _first_operator(kernel) == kind
