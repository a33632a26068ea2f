"""The README's gallery script (benchmark/gallery.py) on a tiny size: the files, their size, the effects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from benchmark.gallery import latest_box_plot, make_gallery

from .conftest import need_model


def _fake_report(root, name: str, date: str, width: int):
    d = root / "some_model" / name
    d.mkdir(parents=True)
    Image.new("RGB", (width, width // 2), (200, 30, 30)).save(d / "latency_box.png")
    (d / "environment.json").write_text(json.dumps({"date": date}))
    return d / "latency_box.png"


def test_latest_box_plot_is_the_newest_report(tmp_path):
    assert latest_box_plot(tmp_path) is None
    _fake_report(tmp_path, "zzz-old", "2026-01-01T00:00:00+00:00", 300)
    newest = _fake_report(tmp_path, "aaa-new", "2026-11-25T00:00:00+00:00", 400)
    assert latest_box_plot(tmp_path) == newest


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    for model in ("deeplab_v3", "hair_segmentation", "selfie_segmenter"):
        need_model(model)
    root = tmp_path_factory.mktemp("gallery")
    _fake_report(root / "results", "host-avx2-2c", "2026-11-25T00:00:00+00:00", 400)
    return {item.path.name: item for item in make_gallery(root / "out", width=160, results=root / "results")}


def test_gallery_writes_one_small_png_per_feature(gallery):
    assert set(gallery) == {"segmentation.png", "hair_color.png", "background.png", "latency_box.png"}
    for item in gallery.values():
        with Image.open(item.path) as img:
            assert img.format == "PNG" and img.width == 160 and img.mode == "P"  # palette: small files
        assert item.path.stat().st_size < 40_000


def test_gallery_captions_name_the_real_model_of_each_picture(gallery):
    assert "deeplab_v3" in gallery["segmentation.png"].caption
    assert "hair_segmentation" in gallery["hair_color.png"].caption
    assert "selfie_segmenter" in gallery["background.png"].caption
    assert "host-avx2-2c" in gallery["latency_box.png"].caption


def test_gallery_hair_picture_shows_the_recolour(gallery):
    """Left half the astronaut, right half recoloured: they differ strongly somewhere, but not everywhere."""
    rgb = np.asarray(Image.open(gallery["hair_color.png"].path).convert("RGB")).astype(int)
    half = rgb.shape[1] // 2
    photo_rows = half  # the astronaut is square: the panels are half x half, the caption below
    diff = np.abs(rgb[:photo_rows, :half] - rgb[:photo_rows, half:2 * half]).max(axis=-1)
    assert 0.02 < (diff > 80).mean() < 0.4
