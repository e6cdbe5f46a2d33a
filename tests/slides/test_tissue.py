"""Tissue detection on synthetic thumbnails, and per-box tissue fractions."""

from __future__ import annotations

import numpy as np
import pytest

from histoseek.slides.tissue import MAX_SAT, box_fractions, tissue_mask
from synthetic_images import he_like_pixels


def white(h: int = 200, w: int = 200, noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.full((h, w, 3), 245, np.int16)
    if noise:
        img += np.random.default_rng(seed).integers(-noise, noise + 1, img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def disk_mask(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


@pytest.mark.parametrize("noise", [0, 4])
def test_blank_glass_has_no_tissue(noise: int) -> None:
    mask = tissue_mask(white(noise=noise))
    assert mask.shape == (200, 200) and mask.dtype == bool
    assert mask.mean() < 0.01


def test_black_border_and_dark_pen_are_not_tissue() -> None:
    img = white()
    img[:, :20] = 0  # scanner border
    img[100:120, 40:160] = (35, 5, 5)  # dark, saturated ink
    assert tissue_mask(img).mean() < 0.01


def test_all_tissue_field_keeps_nearly_everything() -> None:
    # Strongly stained left half (saturation ~0.5), pale right half (~0.2): plain Otsu would
    # split the two and drop the pale half; the clip at MAX_SAT keeps both.
    img = np.empty((200, 200, 3), np.uint8)
    img[:, :100] = (200, 100, 160)
    img[:, 100:] = (230, 185, 210)
    rng = np.random.default_rng(1)
    img = np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    pale_saturation = 1 - 185 / 230
    assert pale_saturation > MAX_SAT  # the case is the one the clip is for
    mask = tissue_mask(img)
    # the closing (border_value=0) trims a ring of close_radius px at the image edge
    inner = mask[2:-2, 2:-2]
    assert inner.mean() > 0.99
    assert inner[:, 100:].mean() > 0.99
    assert mask.mean() > 0.95


def test_synthetic_he_tissue_found_where_it_is() -> None:
    img = he_like_pixels(300, 400)
    mask = tissue_mask(img)
    truth = np.zeros((300, 400), bool)
    truth[50:250, 66:334] = True  # he_like_pixels puts tissue in the middle two thirds
    agreement = (mask == truth).mean()
    assert agreement > 0.97


def test_hole_inside_tissue_is_filled_and_specks_removed() -> None:
    img = white(300, 300)
    blob = disk_mask(300, 300, 150, 150, 80)
    hole = disk_mask(300, 300, 150, 150, 25)
    img[blob & ~hole] = (210, 130, 190)
    img[10:12, 10:12] = (120, 60, 160)  # a 4-pixel speck: far below min_object_fraction
    mask = tissue_mask(img)
    assert mask[150, 150]  # centre of the hole
    assert mask[hole].mean() == 1.0
    assert mask[blob].mean() > 0.99
    assert not mask[:20, :20].any()
    assert mask[~disk_mask(300, 300, 150, 150, 84)].mean() < 0.01


def test_box_fractions_hand_computed() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # tissue in the top-left quarter
    boxes = np.array([
        [0, 0, 4, 4],  # mask[0:2, 0:2]: all tissue
        [0, 0, 8, 8],  # whole mask: 4 of 16
        [4, 0, 4, 4],  # mask[0:2, 2:4]: none
        [2, 2, 4, 4],  # mask[1:3, 1:3]: one of four
        [2, 0, 2, 4],  # mask[0:2, 1:2]: both tissue
        [6, 6, 8, 8],  # mostly outside: mask[3:4, 3:4]: none
    ])
    fractions = box_fractions(mask, boxes, scale=0.5)
    assert fractions.dtype == np.float32
    np.testing.assert_allclose(fractions, [1.0, 0.25, 0.0, 0.25, 1.0, 0.0])


def test_box_fractions_of_no_boxes() -> None:
    out = box_fractions(np.ones((4, 4), bool), np.zeros((0, 4), np.int64), scale=1.0)
    assert out.shape == (0,)
