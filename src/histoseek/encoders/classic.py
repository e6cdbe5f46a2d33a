"""``classic``: a handcrafted content-based-retrieval baseline (no learning, no weights).

Colour (HSV and CIELAB histograms), texture (rotation-invariant uniform LBP at two radii) and
co-occurrence statistics (GLCM) are computed with scikit-image. Each block is L1-normalised
and square-rooted (Hellinger mapping) so that inner product compares distributions fairly,
then the blocks are weighted equally and the whole vector is L2-normalised.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray, rgb2hsv, rgb2lab
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.transform import resize

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess, l2_normalise

_HSV_BINS = (18, 8, 8)
_LAB_BINS = (8, 12, 12)
_LAB_RANGES = ((0.0, 100.0), (-60.0, 80.0), (-60.0, 60.0))
_LBP_SETTINGS = ((8, 1.0), (16, 2.0))
_GLCM_LEVELS = 32
_GLCM_DISTANCES = (1, 3)
_GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
_WORK_PX = 224


def _hellinger(hist: np.ndarray) -> np.ndarray:
    hist = hist.astype(np.float32)
    total = hist.sum()
    return np.sqrt(hist / total) if total > 0 else hist


def _colour_features(rgb: np.ndarray) -> list[np.ndarray]:
    small = rgb[::2, ::2]
    hsv = rgb2hsv(small).reshape(-1, 3)
    lab = rgb2lab(small).reshape(-1, 3)
    blocks = []
    for channel, bins in enumerate(_HSV_BINS):
        hist, _ = np.histogram(hsv[:, channel], bins=bins, range=(0.0, 1.0))
        blocks.append(_hellinger(hist))
    for channel, (bins, value_range) in enumerate(zip(_LAB_BINS, _LAB_RANGES, strict=True)):
        hist, _ = np.histogram(lab[:, channel], bins=bins, range=value_range)
        blocks.append(_hellinger(hist))
    return [np.concatenate(blocks[:3]) / np.sqrt(3), np.concatenate(blocks[3:]) / np.sqrt(3)]


def _texture_features(gray_u8: np.ndarray) -> list[np.ndarray]:
    blocks = []
    for points, radius in _LBP_SETTINGS:
        codes = local_binary_pattern(gray_u8, points, radius, method="uniform")
        hist, _ = np.histogram(codes, bins=points + 2, range=(0, points + 2))
        blocks.append(_hellinger(hist))
    return [np.concatenate(blocks) / np.sqrt(len(blocks))]


def _glcm_features(gray_u8: np.ndarray) -> np.ndarray:
    quantised = (gray_u8 // (256 // _GLCM_LEVELS)).astype(np.uint8)
    glcm = graycomatrix(
        quantised, _GLCM_DISTANCES, _GLCM_ANGLES, levels=_GLCM_LEVELS, symmetric=True, normed=True
    )
    values = []
    for prop in _GLCM_PROPS:
        per_distance = graycoprops(glcm, prop).mean(axis=1)  # average over angles
        if prop in ("contrast", "dissimilarity"):
            per_distance = np.log1p(per_distance) / np.log1p(_GLCM_LEVELS**2)
        elif prop == "correlation":
            per_distance = (per_distance + 1.0) / 2.0
        values.append(per_distance)
    vector = np.concatenate(values).astype(np.float32)
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def classic_features(tile: np.ndarray) -> np.ndarray:
    """Handcrafted feature vector of one uint8 RGB tile (unnormalised blocks concatenated)."""
    if tile.shape[0] != _WORK_PX or tile.shape[1] != _WORK_PX:
        tile = (resize(tile, (_WORK_PX, _WORK_PX), anti_aliasing=True) * 255).astype(np.uint8)
    gray = (rgb2gray(tile) * 255).astype(np.uint8)
    blocks = _colour_features(tile) + _texture_features(gray) + [_glcm_features(gray)]
    return np.concatenate(blocks)


class ClassicEncoder(Encoder):
    """Deterministic handcrafted features; runs anywhere, the floor every model must beat."""

    def __init__(self) -> None:
        dim = int(classic_features(np.zeros((_WORK_PX, _WORK_PX, 3), np.uint8)).shape[0])
        self.info = EncoderInfo(
            name="classic",
            version="1",
            dim=dim,
            modalities=("image",),
            preprocess=Preprocess(input_px=_WORK_PX, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        )

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return l2_normalise(np.stack([classic_features(t) for t in tiles]))


def create_classic(spec: object, pretrained: str | None, device: str) -> ClassicEncoder:
    """Registry factory; ``pretrained`` and ``device`` do not apply to handcrafted features."""
    return ClassicEncoder()
