"""Made-on-the-spot H&E-like pixels and pyramidal TIFFs for tests (a module with a unique
name: test files import it directly, which ``conftest`` cannot be, as there are several)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def he_like_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Synthetic H&E-ish RGB: pink stroma with purple nuclei blobs on white glass borders."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 245, np.uint8)
    y0, y1, x0, x1 = height // 6, height - height // 6, width // 6, width - width // 6
    tissue = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    tissue[..., 0] = rng.integers(200, 235, tissue.shape[:2])
    tissue[..., 1] = rng.integers(120, 160, tissue.shape[:2])
    tissue[..., 2] = rng.integers(170, 210, tissue.shape[:2])
    n_nuclei = max(1, (tissue.shape[0] * tissue.shape[1]) // 400)
    ys = rng.integers(0, tissue.shape[0], n_nuclei)
    xs = rng.integers(0, tissue.shape[1], n_nuclei)
    for y, x in zip(ys, xs, strict=True):
        tissue[max(0, y - 3) : y + 3, max(0, x - 3) : x + 3] = (90, 60, 150)
    img[y0:y1, x0:x1] = tissue
    return img


def write_pyramid_tiff(path: Path, pixels: np.ndarray, mpp: float | None,
                       levels: int = 3, tile: int = 256) -> Path:
    """A tiled pyramidal TIFF, one IFD per level (what OpenSlide's generic-tiff reader reads),
    with resolution tags when ``mpp`` is given."""
    import tifffile

    options = dict(tile=(tile, tile), photometric="rgb", compression="jpeg")
    if mpp is not None:
        options["resolution"] = (1e4 / mpp, 1e4 / mpp)
        options["resolutionunit"] = "CENTIMETER"
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        level = pixels
        for i in range(levels):
            if i:
                level = level[::2, ::2]
                options["resolution"] = options.get("resolution") and tuple(
                    r / 2 for r in options["resolution"])
            tif.write(level, subfiletype=1 if i else 0, **options)
    return path
