"""The tuned graph imports TFLite operators without the stock frontend's artefacts (tuning/import_rewrites.py);
the stock graph (default.so) keeps them. Agreement with LiteRT: tests/test_transforms.py."""

from __future__ import annotations

import re

import pytest

from runtime.acquire import resolve_model
from tuning.importer import STOCK_GRAPH, TUNED_GRAPH, import_tflite

from .conftest import need_model


def _script(name: str, options) -> str:
    need_model(name)
    return import_tflite(resolve_model(name).path, name, options).script(show_meta=False)


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


@pytest.fixture(scope="module")
def hair():
    return {options: _script("hair_segmentation", options) for options in (STOCK_GRAPH, TUNED_GRAPH)}


def test_prelu_is_per_channel_on_the_feature_map(hair):
    tuned, stock = hair[TUNED_GRAPH], hair[STOCK_GRAPH]
    prelus = _count(r"R\.nn\.prelu\(", tuned)
    assert prelus > 50 and _count(r"R\.nn\.prelu\([^)]*axis=3\)", tuned) == prelus
    assert _count(r"R\.nn\.prelu\([^)]*axis=0\)", stock) == prelus  # the stock form: flattened, one alpha per element
    assert _count(r"R\.broadcast_to\(", tuned) < _count(r"R\.broadcast_to\(", stock) - 50


def test_identity_and_one_pixel_resizes_are_not_interpolated():
    tuned, stock = _script("deeplab_v3", TUNED_GRAPH), _script("deeplab_v3", STOCK_GRAPH)
    assert _count(r"R\.image\.resize2d\(", stock) == 3
    assert _count(r"R\.image\.resize2d\(", tuned) == 1  # the final 33x33 -> 257x257 upsample
    assert _count(r"R\.broadcast_to\(", tuned) == _count(r"R\.broadcast_to\(", stock) + 1


def test_mediapipe_transposed_conv_stays_in_nhwc():
    tuned, stock = _script("selfie_segmenter", TUNED_GRAPH), _script("selfie_segmenter", STOCK_GRAPH)
    layout_copies = r"R\.permute_dims\([^)]*axes=\[0, (3, 1, 2|2, 3, 1)\]\)"  # NHWC <-> NCHW of a feature map
    assert _count(layout_copies, tuned) == 0
    assert _count(layout_copies, stock) == 2  # around TVM's NCHW-only conv2d_transpose
