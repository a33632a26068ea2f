"""The architecture twin matches the real model's graph (shared/reference) and runs in LiteRT."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from runtime.engines import create_engine
from runtime.tflite_graph import TFLiteGraph
from runtime.twin import DESCRIPTION, twin_bytes

from .conftest import need_reference
from .reference_graph import parse

# Relay op (as TVM printed the real model) -> TFLite op in the twin. Convolutions are compared
# separately, by signature.
RELAY_TO_TFLITE = {
    "add": "ADD",
    "multiply": "MUL",
    "reshape": "RESHAPE",
    "transpose": "TRANSPOSE",
    "nn.softmax": "SOFTMAX",
    "sum": "SUM",
}


@pytest.fixture(scope="module")
def graph(twin) -> TFLiteGraph:
    return TFLiteGraph.load(twin.path)


@pytest.fixture(scope="module")
def reference():
    need_reference()
    return parse()


def test_generation_is_byte_identical(twin):
    assert twin_bytes() == twin_bytes() == twin.path.read_bytes()


def test_io_shapes(graph):
    assert graph.input_shapes == [(1, 256, 256, 3)]
    assert graph.output_shapes == [(1, 256, 256, 6)]
    assert "synthetic" in graph.description and "meaningless" in DESCRIPTION


def test_operator_counts_match_reference(graph, reference):
    ref_ops, ref_convs = reference
    counts = graph.op_counts()
    for relay_op, tfl_op in RELAY_TO_TFLITE.items():
        assert counts[tfl_op] == ref_ops[relay_op], relay_op
    resizes = counts["RESIZE_NEAREST_NEIGHBOR"] + counts["RESIZE_BILINEAR"]
    assert resizes == ref_ops["image.resize2d"]
    n_convs = counts["CONV_2D"] + counts["DEPTHWISE_CONV_2D"] + counts["TRANSPOSE_CONV"]
    assert n_convs == len(ref_convs) == 86
    assert counts["TRANSPOSE_CONV"] == sum(c.kind == "transpose" for c in ref_convs) == 1


def _twin_conv_signatures(graph: TFLiteGraph) -> Counter:
    sigs = Counter()
    for op in graph.ops:
        if op.name == "CONV_2D":
            kind, (_, kh, kw, _), x = "conv", op.input_shapes[1], op.input_shapes[0]
        elif op.name == "DEPTHWISE_CONV_2D":
            kind, (_, kh, kw, _), x = "depthwise", op.input_shapes[1], op.input_shapes[0]
        elif op.name == "TRANSPOSE_CONV":
            kind, (_, kh, kw, _), x = "transpose", op.input_shapes[1], op.input_shapes[2]
        else:
            continue
        sigs[(kind, x, op.output_shapes[0], (kh, kw))] += 1
    return sigs


def test_every_convolution_has_the_reference_shapes(graph, reference):
    _, ref_convs = reference
    nhwc = lambda s: (s[0], s[2], s[3], s[1])  # noqa: E731
    expected = Counter((c.kind, nhwc(c.in_shape), nhwc(c.out_shape), c.kernel) for c in ref_convs)
    assert _twin_conv_signatures(graph) == expected


def test_total_macs_equal_reference(graph, reference):
    _, ref_convs = reference
    ref_macs = sum(c.macs for c in ref_convs)
    assert graph.total_macs() == ref_macs
    assert 4.0e9 < ref_macs < 4.4e9  # "about 4.2 GMAC" per the reference README


def test_key_shapes(graph):
    outputs = {op.output_shapes[0] for op in graph.ops}
    # encoder stages, patch layouts of both transformer stages, decoder and output
    for shape in [(1, 128, 128, 16), (1, 64, 64, 128), (1, 32, 32, 256), (1, 16, 64, 128),
                  (1, 16, 16, 1536), (1, 16, 16, 192), (1, 16, 1, 64), (1, 16, 1, 16),
                  (1, 128, 128, 64), (1, 256, 256, 32), (1, 256, 256, 6)]:
        assert shape in outputs, shape


def test_runs_in_litert(twin):
    engine = create_engine("litert", twin, threads=2)
    x = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    y = engine.run(x)
    assert y.shape == (1, 256, 256, 6)
    assert np.isfinite(y).all()
    assert y.std() > 0.1  # not a constant output
