"""Region → locations: slide windows of the query's size that best match it, as scored boxes.

A pathologist who draws a 2×3-tile region and asks "where else does tissue like this lie?"
wants boxes of about that size, not forty overlapping tiles, and not one box swallowing a
slide whose tissue is all alike. So each candidate slide's tiles are scored against the
query and laid on the slide's tile grid (a similarity map, the same one the heatmaps show);
a window of the query's size in tiles slides over it (integral images), and the best
non-overlapping windows become regions. Tiles are one physical size across slides (the
library's ``target_mpp``), so a window of n tiles is the same tissue area in every slide.
Coordinates stay level-0 pixels of each slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class SimilarityMap:
    """One slide's tiles on their grid: ``scores[row, col]`` (NaN where no tissue tile)."""

    scores: np.ndarray
    index: np.ndarray  # [rows, cols] position of the tile in the inputs, -1 where none
    origin: tuple[float, float]
    side: float

    @classmethod
    def build(cls, boxes: np.ndarray, scores: np.ndarray) -> SimilarityMap:
        """From level-0 tile boxes ``[n, 4]`` (one grid, equal sides) and their scores."""
        side = float(np.median(boxes[:, 2]))
        x0, y0 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
        cols = np.rint((boxes[:, 0] - x0) / side).astype(int)
        rows = np.rint((boxes[:, 1] - y0) / side).astype(int)
        grid = np.full((rows.max() + 1, cols.max() + 1), np.nan, np.float32)
        index = np.full(grid.shape, -1, np.int64)
        grid[rows, cols] = scores
        index[rows, cols] = np.arange(len(boxes))
        return cls(grid, index, (x0, y0), side)

    def box(self, row: int, col: int, rows: int, cols: int) -> Box:
        x = self.origin[0] + col * self.side
        y = self.origin[1] + row * self.side
        return (round(x), round(y), round(cols * self.side), round(rows * self.side))


@dataclass(frozen=True)
class Window:
    """A matched window: mean tile score, level-0 box, and the input positions of its tiles."""

    score: float
    box: Box
    tiles: tuple[int, ...]


def template_window_scores(similarity: SimilarityMap, per_query_tile: np.ndarray,
                           shape: tuple[int, int]) -> np.ndarray:
    """Each window's mean similarity of its tiles to the query tiles at the same place.

    ``per_query_tile [n, rows * cols]``: each slide tile's similarity to each query tile, the
    query's tiles in row-major order on a grid of ``shape``. Where tissue keeps its layout (a
    region of this very slide, a serial section) the right window stands out even in tissue
    that is alike everywhere; NaN where the window has no tile at a query tile's place.
    """
    grid = similarity.scores
    rows, cols = shape
    out_shape = (grid.shape[0] - rows + 1, grid.shape[1] - cols + 1)
    if min(out_shape) < 1 or per_query_tile.shape[1] != rows * cols:
        return np.full((max(out_shape[0], 1), max(out_shape[1], 1)), np.nan)
    present = similarity.index >= 0
    total = np.zeros(out_shape)
    count = np.zeros(out_shape)
    for q, column in enumerate(per_query_tile.T):
        i, j = divmod(q, cols)
        values = np.zeros(grid.shape)
        values[present] = column[similarity.index[present]]
        total += values[i : i + out_shape[0], j : j + out_shape[1]]
        count += present[i : i + out_shape[0], j : j + out_shape[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def best_windows(similarity: SimilarityMap, shape: tuple[int, int], top: int,
                 min_cover: float = 0.5, avoid: Box | None = None,
                 layout: np.ndarray | None = None, layout_weight: float = 0.5) -> list[Window]:
    """The ``top`` best non-overlapping windows of ``shape`` = (rows, cols) tiles.

    A window's score is the mean over its tissue tiles, mixed with ``layout`` (the
    ``template_window_scores`` of a region query, top-left indexed) at ``layout_weight``
    where that is defined; windows with fewer than
    ``min_cover`` of their cells on tissue are skipped (the mean of one tile at a slide's
    edge would beat a full match). Windows overlapping ``avoid`` by half their area or more
    are skipped: a region query should not find itself.
    """
    grid = similarity.scores
    rows = min(shape[0], grid.shape[0])
    cols = min(shape[1], grid.shape[1])
    present = ~np.isnan(grid)
    total = _window_sums(np.where(present, grid, 0.0), rows, cols)
    count = _window_sums(present.astype(np.float64), rows, cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= max(1.0, min_cover * rows * cols), total / count, -np.inf)
    if layout is not None and layout.shape == mean.shape:
        mixed = (1 - layout_weight) * mean + layout_weight * layout
        mean = np.where(np.isnan(layout), mean, mixed)
    taken = np.zeros(grid.shape, bool)
    found: list[Window] = []
    for flat in np.argsort(-mean, axis=None):
        if len(found) >= top:
            break
        r, c = np.unravel_index(flat, mean.shape)
        if not np.isfinite(mean[r, c]):
            break
        if taken[r : r + rows, c : c + cols].any():
            continue
        box = similarity.box(int(r), int(c), rows, cols)
        if avoid is not None and _overlap(box, avoid) >= 0.5 * box[2] * box[3]:
            continue
        taken[r : r + rows, c : c + cols] = True
        cells = similarity.index[r : r + rows, c : c + cols]
        found.append(Window(float(mean[r, c]), box, tuple(int(i) for i in cells[cells >= 0])))
    return found


def _window_sums(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum over every ``rows × cols`` window (top-left indexed), by an integral image."""
    padded = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    padded[1:, 1:] = np.cumsum(np.cumsum(values, axis=0), axis=1)
    return (padded[rows:, cols:] - padded[:-rows, cols:] - padded[rows:, :-cols]
            + padded[:-rows, :-cols])


def _overlap(a: Box, b: Box) -> int:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy
