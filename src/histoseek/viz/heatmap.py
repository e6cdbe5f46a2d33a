"""Slide heatmaps: the thumbnail, every tile's similarity to the query as colour, and the
matched boxes drawn and numbered by rank (what a pathologist looks at before opening the
slide)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

Box = tuple[int, int, int, int]


def render_slide_heatmap(thumbnail: np.ndarray, dimensions: tuple[int, int],
                         tile_boxes: np.ndarray, scores: np.ndarray,
                         marked: Sequence[tuple[Box, str]], out: Path, title: str = "",
                         score_name: str = "similarity to the query") -> Path:
    """Write ``out`` (PNG).

    ``tile_boxes``: level-0 ``[n, 4]`` boxes with their ``scores``; ``marked``: level-0 boxes
    with a caption (e.g. "1  0.93"), drawn in rank order.
    """
    height_px, width_px = thumbnail.shape[:2]
    sx, sy = width_px / dimensions[0], height_px / dimensions[1]
    heat = np.full((height_px, width_px), np.nan, np.float32)
    for (x, y, w, h), score in zip(np.asarray(tile_boxes), np.asarray(scores), strict=True):
        x0, y0 = int(x * sx), int(y * sy)
        heat[y0 : max(y0 + 1, int((y + h) * sy)), x0 : max(x0 + 1, int((x + w) * sx))] = score
    fig, ax = plt.subplots(figsize=(8, 8 * height_px / max(width_px, 1) + 0.6))
    ax.imshow(thumbnail)
    shown = ax.imshow(np.ma.masked_invalid(heat), cmap="inferno", alpha=0.5,
                      vmin=float(np.nanmin(heat)) if np.isfinite(heat).any() else 0.0,
                      vmax=float(np.nanmax(heat)) if np.isfinite(heat).any() else 1.0)
    fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.02, label=score_name)
    for rank, ((x, y, w, h), caption) in enumerate(marked, 1):
        ax.add_patch(Rectangle((x * sx, y * sy), w * sx, h * sy, fill=False,
                               edgecolor="#00e5ff", linewidth=2.0))
        ax.text(x * sx + 2, y * sy + 2, caption or str(rank), color="black", fontsize=9,
                va="top", bbox={"facecolor": "#00e5ff", "edgecolor": "none", "pad": 1.5})
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
