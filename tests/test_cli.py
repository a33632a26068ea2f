"""The console script end to end on real photos."""

from __future__ import annotations

import numpy as np
from PIL import Image

from runtime.cli import main

from .conftest import need_model


def test_segment_writes_masks_and_overlay(grace_hopper_path, tmp_path, capsys):
    need_model("selfie_segmenter")
    assert main(["segment", str(grace_hopper_path), "--model", "selfie_segmenter", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["grace_hopper.mask.background.png", "grace_hopper.mask.person.png", "grace_hopper.overlay.png"]
    mask = np.asarray(Image.open(tmp_path / "grace_hopper.mask.person.png"))
    assert mask.shape == (600, 512) and mask.max() > 200 and mask.min() < 50
    assert "inference" in capsys.readouterr().out


def test_twin_output_says_it_is_synthetic(grace_hopper_path, tmp_path, capsys):
    assert main(["segment", str(grace_hopper_path), "--model", "selfie_multiclass_twin",
                 "--out", str(tmp_path)]) == 0
    assert "masks are meaningless" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.mask.*.png"))) == 6


def test_hair_uses_fallback_model_and_reports_colour(grace_hopper_path, grace_hopper, tmp_path, capsys):
    need_model("hair_segmentation")
    out = tmp_path / "h.png"
    # selfie_segmenter has no hair class: the hair comes from hair_segmentation
    assert main(["hair", str(grace_hopper_path), "--color", "#00ff00", "--model", "selfie_segmenter",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hair_segmentation on litert" in printed and "#00ff00" in printed
    result = np.asarray(Image.open(out)).astype(int)
    assert result.shape == grace_hopper.shape
    delta = result - grace_hopper.astype(int)
    changed = np.abs(delta).max(axis=-1) > 10
    # some hair, not the whole photo, turned green, mostly in the upper part (the hair on her head)
    assert 0.01 < changed.mean() < 0.2
    assert np.median(np.nonzero(changed)[0]) < result.shape[0] / 3
    mean_delta = delta[changed].mean(axis=0)
    assert mean_delta[1] > 50 and mean_delta[1] > 3 * max(mean_delta[0], mean_delta[2])


def test_background(grace_hopper_path, grace_hopper, tmp_path, capsys):
    need_model("selfie_segmenter")
    bg = tmp_path / "bg.png"
    Image.new("RGB", (50, 20), (0, 0, 255)).save(bg)
    out = tmp_path / "b.png"
    assert main(["background", str(grace_hopper_path), "--background", str(bg), "--model", "selfie_segmenter",
                 "--out", str(out)]) == 0
    assert "selfie_segmenter on litert" in capsys.readouterr().out
    result = np.asarray(Image.open(out)).astype(int)
    assert result.shape == (600, 512, 3)
    blue = np.abs(result - (0, 0, 255)).max(axis=-1) <= 3
    kept = np.abs(result - grace_hopper.astype(int)).max(axis=-1) <= 3
    # the background became the (scaled) blue picture; the person is the photo's own pixels
    assert blue.mean() > 0.3 and kept.mean() > 0.4
    assert blue[:50, :50].all() and blue[:50, -50:].all()  # top corners: background
    assert kept[250:350, 206:306].all()  # her face


def test_bad_colour_is_a_clean_error(grace_hopper_path, capsys):
    assert main(["hair", str(grace_hopper_path), "--color", "#12"]) == 2
    assert "#RRGGBB" in capsys.readouterr().err


def test_bad_photo_is_a_clean_error(tmp_path, capsys):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    assert main(["segment", str(junk), "--model", "selfie_segmenter"]) == 2
    assert "error: not an image" in capsys.readouterr().err
