"""Proxies for "does the model still work on tissue it never saw", measurable without such data.

The project's real acceptance data (other organs) is not at hand, so two signals stand in:

- **withheld classes**: a model trained with some classes neither labelled nor described is
  asked to retrieve exactly those classes; a model that kept general features does it at
  least as well as its frozen pretrained start.
- **out-of-domain neighbourhoods**: on tiles unlike the training data (other organs' slides,
  zoomed-in crops), the share of each tile's k nearest neighbours under the frozen reference
  that are still among its k under the model. Forgetting reorganises that space; 1.0 means
  the model kept the reference's notion of similarity there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histoseek.evaluation.metrics import majority_vote_at_k
from histoseek.evaluation.protocols import neighbour_labels, rank_neighbours
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import TilingConfig, iter_tile_batches, tile_slide


def knn_indices(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest neighbours of every row among the others (inner product)."""
    return rank_neighbours(embeddings, np.zeros(len(embeddings)), k).indices


def remix(joint: np.ndarray, general_dim: int, g0: float, g: float) -> np.ndarray:
    """A v2 vector ``[sqrt(g0) G, sqrt(1 - g0) T]`` re-mixed with another general weight ``g``
    (the general branch is frozen, so ``g`` is a choice at inference, not in training)."""
    general, tuned = joint[:, :general_dim] / np.sqrt(g0), joint[:, general_dim:] / np.sqrt(1 - g0)
    return np.concatenate([np.sqrt(g) * general, np.sqrt(1 - g) * tuned], axis=1)


def neighbourhood_overlap(reference: np.ndarray, model: np.ndarray, k: int = 10) -> np.ndarray:
    """Per tile: |kNN_reference ∩ kNN_model| / k."""
    if len(reference) != len(model):
        raise ValueError(f"{len(reference)} reference vectors but {len(model)} model vectors")
    ref, mod = knn_indices(reference, k), knn_indices(model, k)
    return np.array([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(ref, mod, strict=True)])


def restricted_mmv(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                   classes: list[str], k: int = 5) -> dict[str, float]:
    """mMV@k over the queries of ``classes`` only (the gallery is every tile, other cases)."""
    labels = np.asarray(labels).astype(str)
    ranking = rank_neighbours(embeddings, labels, k, np.asarray(groups).astype(str))
    ranked = neighbour_labels(ranking, labels)
    out = {}
    for name in classes:
        rows = np.flatnonzero(labels == name)
        if len(rows):
            out[name] = float(majority_vote_at_k(labels[rows], [ranked[i] for i in rows], k))
    rows = np.flatnonzero(np.isin(labels, classes))
    out["all"] = float(majority_vote_at_k(labels[rows], [ranked[i] for i in rows], k))
    return out


def slide_tiles(path: Path, mpp: float | None, target_mpp: float = 0.5,
                tile_px: int = 224) -> np.ndarray:
    """Every tissue tile of a slide at ``target_mpp`` (uint8 ``[n, px, px, 3]``)."""
    with open_slide(path, mpp=mpp) as slide:
        grid = tile_slide(slide, TilingConfig(target_mpp=target_mpp, tile_px=tile_px,
                                              min_tissue=0.5))
        batches = [tiles for _, tiles in iter_tile_batches(slide, grid, 64)]
    return np.concatenate(batches) if batches else np.zeros((0, tile_px, tile_px, 3), np.uint8)


def random_crops(images: list[np.ndarray], n: int, seed: int = 0, out_px: int = 224,
                 scale: tuple[float, float] = (0.3, 0.6)) -> np.ndarray:
    """``n`` zoomed-in crops (a random ``scale`` of the side, resized): a magnification the
    training data never had."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.zeros((n, out_px, out_px, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(*scale))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[y:y + side, x:x + side])
        out[i] = np.asarray(crop.resize((out_px, out_px), Image.Resampling.BICUBIC))
    return out
