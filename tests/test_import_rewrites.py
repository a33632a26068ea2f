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


def test_argmax_pool_and_unpool_are_one_kernel_each(hair):
    tuned, stock = hair[TUNED_GRAPH], hair[STOCK_GRAPH]
    pools = _count(r"R\.argmax\(", stock)
    assert pools >= 3 and "R.argmax(" not in tuned and "R.where(" not in tuned
    assert _count(r"cls\.max_pool_argmax\d*,", tuned) == pools
    assert _count(r"cls\.max_unpool\d*,", tuned) == _count(r"R\.where\(", stock) == pools


def test_the_one_pass_pool_keeps_the_first_maximum_in_x_major_order_and_unpool_inverts_it():
    import numpy as np
    import tvm
    from tvm import te

    from tuning.custom_ops import _pool_argmax_te, _unpool_te

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (1, 4, 6, 5)).astype("float32")  # values in {0, 1, 2}: many ties
    data = te.placeholder(x.shape, name="x")
    pooled, index = _pool_argmax_te(data, 2)
    restored = _unpool_te(pooled, index, 2)
    lib = tvm.tirx.build(tvm.IRModule({"main": te.create_prim_func([data, pooled, index, restored])}),
                         target=tvm.target.Target({"kind": "llvm", "num-cores": 1}))
    outs = [tvm.runtime.tensor(np.zeros([int(d) for d in t.shape], "float32")) for t in (pooled, index, restored)]
    lib["main"](tvm.runtime.tensor(x), *outs)
    got_pooled, got_index, got_restored = (o.numpy() for o in outs)
    windows = x.reshape(1, 2, 2, 3, 2, 5).transpose(0, 1, 3, 5, 4, 2).reshape(1, 2, 3, 5, 4)  # (kx, ky), x-major
    np.testing.assert_array_equal(got_pooled, windows.max(-1))
    np.testing.assert_array_equal(got_index, windows.argmax(-1).astype("float32") + np.float32(0.1))
    expected = np.zeros_like(x)
    for i, j, c in np.ndindex(2, 3, 5):
        slot = int(windows[0, i, j, c].argmax())
        expected[0, i * 2 + slot % 2, j * 2 + slot // 2, c] = windows[0, i, j, c].max()
    np.testing.assert_array_equal(got_restored, expected)
