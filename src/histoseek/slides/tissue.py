"""Tissue detection on a slide thumbnail, so background is never tiled or encoded.

Saturation separates stained tissue from glass: Otsu picks the threshold, clipped to a band
(``MIN_SAT``..``MAX_SAT``) so that a field that is all tissue does not lose its paler half and
a blank field does not turn noise into tissue. Morphology is scikit-image/SciPy, imported
when a mask is made: a tile or text search never needs them (~0.3 s of every ``histoseek
search`` otherwise).
"""

from __future__ import annotations

import numpy as np

MIN_SAT = 0.04
MAX_SAT = 0.15


def tissue_mask(
    thumbnail: np.ndarray, min_object_fraction: float = 0.0005, close_radius: int = 2
) -> np.ndarray:
    """Boolean mask ``[h, w]`` of tissue on a uint8 RGB thumbnail.

    Pen marks and black scanner borders are dark and saturated; pixels darker than 15% value
    are dropped. Objects smaller than ``min_object_fraction`` of the image are removed and
    holes inside tissue (lumens, fat) are filled.
    """
    from scipy import ndimage as ndi
    from skimage.color import rgb2hsv
    from skimage.filters import median, threshold_otsu
    from skimage.morphology import disk, remove_small_objects

    hsv = rgb2hsv(thumbnail[..., :3])
    saturation = median((hsv[..., 1] * 255).astype(np.uint8), disk(2)) / 255.0
    if float(saturation.max() - saturation.min()) < 1e-3:
        threshold = MIN_SAT
    else:
        threshold = float(np.clip(threshold_otsu(saturation), MIN_SAT, MAX_SAT))
    mask = (saturation > threshold) & (hsv[..., 2] > 0.15)
    if close_radius > 0:
        # pad by edge replication so closing does not erode tissue touching the border
        r = close_radius
        padded = np.pad(mask, r, mode="edge")
        mask = ndi.binary_closing(padded, structure=disk(r))[r:-r, r:-r]
    min_size = max(1, int(min_object_fraction * mask.size))
    mask = remove_small_objects(mask, max_size=min_size)
    return ndi.binary_fill_holes(mask)


def box_fractions(mask: np.ndarray, boxes: np.ndarray, scale: float) -> np.ndarray:
    """Fraction of tissue in each level-0 box ``[n, 4]`` (x, y, w, h) given a mask at ``scale``.

    ``scale`` is mask pixels per level-0 pixel. An integral image answers each box in O(1).
    """
    if len(boxes) == 0:
        return np.zeros(0, np.float32)
    integral = np.pad(mask.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = mask.shape
    x0 = np.clip(np.floor(boxes[:, 0] * scale).astype(int), 0, w)
    y0 = np.clip(np.floor(boxes[:, 1] * scale).astype(int), 0, h)
    x1 = np.clip(np.ceil((boxes[:, 0] + boxes[:, 2]) * scale).astype(int), 0, w)
    y1 = np.clip(np.ceil((boxes[:, 1] + boxes[:, 3]) * scale).astype(int), 0, h)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (inside / area).astype(np.float32)
