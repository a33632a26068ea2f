"""Hair recolour and background replacement on real photos and masks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from runtime.effects import class_palette, mask_image, overlay, recolor_hair, replace_background
from runtime.pipeline import load_segmenter

from .conftest import need_model


@pytest.fixture(scope="module")
def hair_mask(astronaut):
    need_model("hair_segmentation")
    return load_segmenter("hair_segmentation", "litert", threads=2).segment(astronaut).confidence("hair")


def test_recolor_changes_pixels_in_proportion_to_the_hair_mask(astronaut, hair_mask):
    out = recolor_hair(astronaut, hair_mask, (200, 30, 160))
    change = np.abs(out.astype(int) - astronaut.astype(int)).max(axis=-1)
    # the soft mask is never exactly 0, so "outside" means low weight: a pixel moves at most
    # mask x 255 levels (plus rounding)
    assert (change <= hair_mask * 255 + 0.5).all()
    assert change[hair_mask < 0.01].max() <= 3
    assert np.median(change[hair_mask > 0.9]) > 20  # and the hair itself does change


def test_recolor_moves_hue_and_keeps_texture(astronaut, hair_mask):
    target = (40, 90, 230)
    out = recolor_hair(astronaut, hair_mask, target)
    core = hair_mask > 0.9
    lab_in, lab_out = rgb2lab(astronaut)[core], rgb2lab(out)[core]
    target_lab = rgb2lab(np.array([[target]], np.uint8))[0, 0]
    hue = lambda lab: np.arctan2(lab[..., 2], lab[..., 1])  # noqa: E731
    assert abs(np.median(hue(lab_out)) - hue(target_lab)) < 0.3
    # lightness texture survives: output lightness correlates with the original strand by strand
    assert np.corrcoef(lab_in[:, 0], lab_out[:, 0])[0, 1] > 0.9


def test_background_composite_is_the_matte_weighted_mix(astronaut):
    h, w = astronaut.shape[:2]
    matte = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))  # background at the left, photo at the right
    # Twice as wide as the photo: covering it keeps the middle half, so the red and green edges are cropped away.
    background = np.zeros((h, 2 * w, 3), np.uint8)
    background[..., 2] = 255
    background[:, : w // 4] = (255, 0, 0)
    background[:, -w // 4 :] = (0, 255, 0)
    out = replace_background(astronaut, matte, background)
    expected = matte[..., None] * astronaut + (1.0 - matte[..., None]) * np.array([0.0, 0.0, 255.0])
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_background_composite_follows_the_matte(grace_hopper):
    need_model("selfie_segmenter")
    seg = load_segmenter("selfie_segmenter", "litert").segment(grace_hopper)
    green = np.zeros((300, 900, 3), np.uint8)
    green[..., 1] = 255
    out = replace_background(grace_hopper, seg.person_confidence(), green)
    matte = seg.person_confidence()
    # within the 1 % of the other layer that the matte lets through
    assert np.abs(out[matte < 0.01].astype(int) - (0, 255, 0)).max() <= 3
    assert np.abs(out[matte > 0.99].astype(int) - grace_hopper[matte > 0.99]).max() <= 3
    assert (matte < 0.01).mean() > 0.2 and (matte > 0.99).mean() > 0.2


def test_overlay_has_legend_and_keeps_background(astronaut):
    category = np.zeros(astronaut.shape[:2], np.uint8)
    category[100:200, 100:200] = 1
    out = overlay(astronaut, category, ("background", "person"))
    assert out.shape[0] == astronaut.shape[0] and out.shape[1] > astronaut.shape[1]  # legend panel
    assert (out[:100, :512] == astronaut[:100]).all()
    assert (out[150, 150] != astronaut[150, 150]).any()


def test_banded_blends_and_masks_equal_the_whole_photo_arithmetic(astronaut):
    """The overlay, the composite and the mask pictures are made a band of rows at a time (bounded memory):
    every pixel, the last partial band's too, is what the formula on the whole photo gives."""
    rgb = astronaut[:150]  # not a whole number of bands
    rng = np.random.default_rng(0)
    category = rng.integers(0, 3, rgb.shape[:2]).astype(np.uint8)
    palette = np.array(class_palette(3), np.uint8)
    a = np.where(category > 0, 0.5, 0.0).astype(np.float32)[..., None]
    expected = np.clip(np.rint(rgb.astype(np.float32) * (1 - a) + palette[category].astype(np.float32) * a), 0, 255)
    np.testing.assert_array_equal(overlay(rgb, category, ("a", "b", "c"), legend=False), expected.astype(np.uint8))
    matte = rng.random(rgb.shape[:2], np.float32)
    background = rng.integers(0, 256, rgb.shape, np.uint8)
    m = matte[..., None]
    expected = np.clip(np.rint(background.astype(np.float32) * (1 - m) + rgb.astype(np.float32) * m), 0, 255)
    np.testing.assert_array_equal(replace_background(rgb, matte, background), expected.astype(np.uint8))
    np.testing.assert_array_equal(mask_image(matte), np.clip(np.rint(matte * 255.0), 0, 255).astype(np.uint8))
