"""Showing a zero-shot slide classification: a terminal table and a heatmap PNG."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from histoseek.search.classify import SlideClassification
from histoseek.slides.reader import open_slide
from histoseek.viz.heatmap import render_slide_heatmap
from histoseek.viz.slide_heatmaps import THUMBNAIL_PX


def print_classification(result: SlideClassification, console: Console) -> None:
    """Class probabilities best first, the decision (or abstention with its margin), and the
    tiles that drove it."""
    name = Path(result.path).name
    verdict = (f"[bold]{result.predicted}[/bold]" if result.predicted else
               f"[yellow]abstain[/yellow] (best '{result.top_class}')")
    table = Table("class", "probability", "pooled similarity",
                  title=f"{name}: {verdict}, margin {result.margin:.3f} (abstains below "
                        f"{result.min_margin:g}); {result.n_tiles} tiles",
                  title_justify="left")
    for cls, prob in result.probabilities.items():
        table.add_row(cls, f"{prob:.3f}", f"{result.pooled[cls]:.3f}")
    console.print(table)
    boxes = "; ".join(f"{t.box[0]},{t.box[1]},{t.box[2]},{t.box[3]} ({t.score:.3f})"
                      for t in result.driving_tiles)
    console.print(f"tiles that drove '{result.top_class}' (x,y,w,h level 0 px, mpp "
                  f"{result.mpp}): {boxes}", highlight=False, soft_wrap=True)


def write_classification_heatmap(result: SlideClassification, folder: Path) -> Path:
    """The slide thumbnail coloured by each tile's similarity to the top class, with the
    driving tiles boxed and numbered."""
    with open_slide(result.path, mpp=result.mpp) as slide:
        thumbnail, dimensions = slide.thumbnail(THUMBNAIL_PX), slide.dimensions
    stem = re.sub(r"[^\w.-]+", "_", Path(result.path).stem)
    verdict = result.predicted or f"abstain (best {result.top_class})"
    probs = ", ".join(f"{c} {p:.2f}" for c, p in list(result.probabilities.items())[:3])
    return render_slide_heatmap(
        thumbnail, dimensions, result.tile_boxes, result.tile_scores,
        [(t.box, f"{i}  {t.score:.2f}") for i, t in enumerate(result.driving_tiles, 1)],
        Path(folder) / f"classify-{stem}.png",
        title=f"{Path(result.path).name}: {verdict}, margin {result.margin:.2f}\n{probs}",
        score_name=f"similarity to '{result.top_class}'")
