"""Small stored summaries of a slide's tiles, so slide-level search need not touch every tile.

Built once per source at index time from its tile embeddings and level-0 boxes:

- ``mean``: one slide vector (the normalised mean of its tiles), for the coarsest ranking;
- ``mosaic`` (Yottixel, Kalra et al. 2020): k-means on the embeddings into at most
  ``MOSAIC_CLUSTERS`` clusters, then within each cluster k-means on tile positions, keeping
  the tile nearest each spatial centre: a few % of the tiles, covering every tissue type
  and spread over the slide. Yottixel clusters colour histograms before encoding; here the
  embeddings exist already, so they are clustered directly;
- ``bag`` (FGCR-style anchors): k-means in joint feature + position space, so each anchor
  gathers similar tiles that also lie together; a region is the normalised mean of its
  tiles, with their bounding box and count.

Each summary keeps, per row, a representative tile id (the mosaic tile itself, or the tile
nearest the region mean), a level-0 box and a weight (tiles it stands for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import faiss
import numpy as np

SummaryKind = Literal["mean", "mosaic", "bag"]
SUMMARY_KINDS: tuple[SummaryKind, ...] = get_args(SummaryKind)
MOSAIC_CLUSTERS = 9  # Yottixel's colour clusters
MOSAIC_FRACTION = 0.05  # share of each cluster's tiles kept (Yottixel: 5-20%)
MOSAIC_MAX = 64  # bound on a huge slide's mosaic (bytes per slide stay small)
BAG_MAX = 32
POSITION_WEIGHT = 2.0  # slide diagonal, in units of embedding distance, for the bag


@dataclass(frozen=True)
class SlideSummary:
    """Rows standing for a slide: unit ``vectors [m, d]``, representative ``tile_ids [m]``,
    level-0 ``boxes [m, 4]`` and ``weights [m]`` (tiles each row stands for)."""

    kind: SummaryKind
    tile_ids: np.ndarray
    boxes: np.ndarray
    weights: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.tile_ids)

    @property
    def nbytes(self) -> int:
        """Bytes this summary takes as stored (vectors float32, ids and boxes int64)."""
        return int(self.vectors.nbytes + self.tile_ids.nbytes + self.boxes.nbytes
                   + self.weights.nbytes)


def summarise_slide(tile_ids: np.ndarray, boxes: np.ndarray, vectors: np.ndarray
                    ) -> dict[SummaryKind, SlideSummary]:
    """Every summary kind of one source's tiles (none for a source without tiles)."""
    if len(tile_ids) == 0:
        return {}
    tile_ids = np.asarray(tile_ids, np.int64)
    boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
    vectors = np.ascontiguousarray(vectors, np.float32)
    return {"mean": slide_mean(tile_ids, boxes, vectors),
            "mosaic": mosaic(tile_ids, boxes, vectors),
            "bag": region_bag(tile_ids, boxes, vectors)}


def slide_mean(tile_ids: np.ndarray, boxes: np.ndarray, vectors: np.ndarray) -> SlideSummary:
    """One unit vector; its tile is the one nearest the mean, its box all tiles' extent."""
    mean = _unit(vectors.mean(axis=0, keepdims=True))
    nearest = int(np.argmax(vectors @ mean[0]))
    return SlideSummary("mean", tile_ids[[nearest]], _extent(boxes)[None],
                        np.array([len(tile_ids)], np.float32), mean)


def mosaic(tile_ids: np.ndarray, boxes: np.ndarray, vectors: np.ndarray,
           clusters: int = MOSAIC_CLUSTERS, fraction: float = MOSAIC_FRACTION,
           max_tiles: int = MOSAIC_MAX) -> SlideSummary:
    """Yottixel's mosaic on embeddings: feature clusters, then spatial clusters in each."""
    n = len(tile_ids)
    feature_cluster = _kmeans_labels(vectors, min(clusters, n), spherical=True)
    centres = _centres(boxes)
    keep_per_cluster = {c: max(1, round(fraction * int(np.sum(feature_cluster == c))))
                        for c in np.unique(feature_cluster)}
    total = sum(keep_per_cluster.values())
    if total > max_tiles:  # scale every cluster down alike; each keeps at least one tile
        keep_per_cluster = {c: max(1, int(m * max_tiles / total))
                            for c, m in keep_per_cluster.items()}
    chosen, weights = [], []
    for c, keep in keep_per_cluster.items():
        members = np.flatnonzero(feature_cluster == c)
        spatial = _kmeans_labels(centres[members], min(keep, len(members)), spherical=False)
        for s in np.unique(spatial):
            group = members[spatial == s]
            middle = centres[group].mean(axis=0)
            chosen.append(int(group[np.argmin(((centres[group] - middle) ** 2).sum(axis=1))]))
            weights.append(len(group))
    order = np.argsort(chosen)
    picked = np.asarray(chosen, np.int64)[order]
    return SlideSummary("mosaic", tile_ids[picked], boxes[picked],
                        np.asarray(weights, np.float32)[order], vectors[picked])


def region_bag(tile_ids: np.ndarray, boxes: np.ndarray, vectors: np.ndarray,
               max_regions: int = BAG_MAX, position_weight: float = POSITION_WEIGHT
               ) -> SlideSummary:
    """Anchors: k-means on ``[embedding, position]``, about sqrt(n) regions."""
    n = len(tile_ids)
    regions = int(np.clip(round(np.sqrt(n)), 1, max_regions))
    centres = _centres(boxes)
    span = float(max(np.ptp(centres, axis=0).max(), 1.0))
    joint = np.hstack([vectors, position_weight * (centres - centres.min(axis=0)) / span])
    labels = _kmeans_labels(joint.astype(np.float32), regions, spherical=False)
    ids, region_boxes, weights, region_vectors = [], [], [], []
    for r in np.unique(labels):
        members = np.flatnonzero(labels == r)
        vector = _unit(vectors[members].mean(axis=0, keepdims=True))[0]
        ids.append(int(tile_ids[members[np.argmax(vectors[members] @ vector)]]))
        region_boxes.append(_extent(boxes[members]))
        weights.append(len(members))
        region_vectors.append(vector)
    return SlideSummary("bag", np.asarray(ids, np.int64), np.asarray(region_boxes, np.int64),
                        np.asarray(weights, np.float32), np.asarray(region_vectors, np.float32))


def _kmeans_labels(points: np.ndarray, k: int, spherical: bool) -> np.ndarray:
    """Cluster labels from FAISS k-means (seeded: a slide's summary is reproducible)."""
    points = np.ascontiguousarray(points, np.float32)
    if k <= 1 or len(points) <= 1:
        return np.zeros(len(points), np.int64)
    if k >= len(points):
        return np.arange(len(points), dtype=np.int64)
    km = faiss.Kmeans(points.shape[1], k, niter=20, seed=1234, spherical=spherical,
                      min_points_per_centroid=1, max_points_per_centroid=4096)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a slide's few hundred points: threads cost more than they save
    try:
        km.train(points)
        _, labels = km.index.search(points, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    return labels[:, 0].astype(np.int64)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:] / 2).astype(np.float32)


def _extent(boxes: np.ndarray) -> np.ndarray:
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    return np.array([x0, y0, x1 - x0, y1 - y0], np.int64)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1)).astype(np.float32)
