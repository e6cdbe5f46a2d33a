"""Retrieval grids: each query beside its top hits, with labels and scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


@dataclass(frozen=True)
class GridCell:
    pixels: np.ndarray  # uint8 [h, w, 3]
    caption: str
    good: bool | None = None  # colours the frame: green match, red miss, none unknown


def render_grid(rows: list[tuple[GridCell, list[GridCell]]], out: Path, title: str = "",
                dpi: int = 100) -> Path:
    """Draw one row per query: the query tile, then its hits left to right."""
    n_cols = 1 + max((len(hits) for _, hits in rows), default=0)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.1 * n_cols, 2.7 * len(rows)),
                             squeeze=False)
    for r, (query, hits) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = query if c == 0 else (hits[c - 1] if c - 1 < len(hits) else None)
            if cell is None:
                ax.axis("off")
                continue
            ax.imshow(cell.pixels)
            colour = {True: "#1a9641", False: "#d7191c", None: "#555555"}[cell.good]
            if c == 0:  # marked below the tile: a title above crowds the caption of the row above
                colour = "#2b83ba"
                ax.set_xlabel(f"QUERY\n{cell.caption}", fontsize=7, color=colour,
                              fontweight="bold")
            else:
                ax.set_xlabel(cell.caption, fontsize=7)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if c == 0 or cell.good is not None else 1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight", pad_inches=0.15)  # captions never cut
    plt.close(fig)
    _shrink_png(out)
    return out


def _shrink_png(path: Path) -> None:
    """Re-save as a 256-colour palette PNG: a grid of tissue photos drops ~3x in size with no
    change a reader notices at this resolution (docs stay small enough to commit)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                               dither=Image.Dither.FLOYDSTEINBERG)
    small.save(path, optimize=True)
