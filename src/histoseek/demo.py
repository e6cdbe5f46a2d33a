"""``histoseek demo``: the whole engine on the bundled demo set, offline, in under a minute."""

from __future__ import annotations

import csv
from importlib.resources import files
from pathlib import Path

from rich.console import Console

from histoseek.errors import NoTextTowerError
from histoseek.library import DEFAULT_ENCODER, Library
from histoseek.search.hits import Hit
from histoseek.viz.grid import GridCell, render_grid
from histoseek.viz.hit_grid import CELL_PX, hit_caption
from histoseek.viz.hit_table import print_hits
from histoseek.viz.labels import display_label

console = Console()


def demo_data_dir() -> Path:
    return Path(str(files("histoseek") / "demo_data"))


def run_demo(out: Path, encoder: str | None = None, k: int = 5) -> Path:
    """Build ``out/library`` from the demo set, run each query type, write ``out/*.png``."""
    data = demo_data_dir()
    slide = data / "slides" / "cmu-1-small-region.svs"
    out.mkdir(parents=True, exist_ok=True)
    lib = Library.open_or_create(out / "library", encoder=encoder or DEFAULT_ENCODER)
    with lib:
        console.rule(f"indexing the demo set into {out / 'library'}")
        added = lib.add([data / "tiles", slide], labels=data / "tiles" / "labels.csv")
        console.print(added.summary(), highlight=False)
        console.print(lib.add_reports(data / "reports.csv").summary(), highlight=False)
        info = lib.info()
        console.print(f"library: {info['sources']} sources ({info['slides']} slides), "
                      f"{info['tiles']} tiles, {info['reports']} reports; encoder "
                      f"{info['encoder']['name']}, index {info['index']}", highlight=False)

        with open(data / "tiles" / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        queries = {}
        for row in rows:
            queries.setdefault(row["label"], row)
        grid_rows = []
        correct = total = 0
        for n, (label, row) in enumerate(sorted(queries.items())):
            query_path = data / "tiles" / row["path"]
            hits = lib.search(image=query_path, k=k, exclude={"source_id": row["source_id"]})
            if n == 0:
                print_hits(hits, title=f"image → image: {row['path']} (its own case excluded)")
            correct += sum(h.label == label for h in hits)
            total += len(hits)
            grid_rows.append((
                GridCell(lib.hit_pixels(_as_tile_hit(lib, query_path)), display_label(label)),
                [_labelled_cell(lib, h, label) for h in hits]))
        console.print(f"image → image precision@{k} over {len(queries)} class queries, "
                      f"leave-one-case-out: {correct}/{total}", highlight=False)

        region = (slide, 900, 900, 448, 448)
        region_hits = lib.search(region=region, k=k)
        print_hits(region_hits, title="region → tiles: cmu-1-small-region.svs:900,900,448,448")
        grid_rows.append((
            GridCell(lib.hit_pixels(_region_hit(region)), "region\n900,900,448,448"),
            [GridCell(lib.hit_pixels(h, CELL_PX), f"{hit_caption(h)}\n{h.x},{h.y}")
             for h in region_hits]))

        print_hits(lib.search(slide=slide, k=3), title="slide → slides: cmu-1-small-region.svs")
        query = "poorly differentiated adenocarcinoma with signet ring cells"
        print_hits(lib.search(text=query, k=3), title=f"text → text: '{query}'")
        try:
            print_hits(lib.search(text=query, target="tiles", k=k), title="text → image")
            print_hits(lib.search(image=data / "tiles" / rows[0]["path"], target="reports", k=3),
                       title="image → text")
        except NoTextTowerError as exc:
            console.print(f"text ↔ image skipped: {exc}", style="yellow", highlight=False)
        picture = render_grid(grid_rows, out / "retrieval_grid.png",
                              title=f"histoseek demo — encoder {info['encoder']['name']}: "
                                    "each query (blue) and its top hits, own case excluded "
                                    "(green: same class, red: other class, grey: unlabelled)")
    console.print(f"retrieval grid: {picture}\nlibrary: {out / 'library'}", highlight=False)
    return picture


def _as_tile_hit(lib: Library, path: Path):  # type: ignore[no-untyped-def]
    from histoseek.search.hits import Hit
    from histoseek.slides.reader import open_slide

    with open_slide(path) as s:
        w, h = s.dimensions
    return Hit(score=1.0, kind="tile", id=-1, path=str(path), x=0, y=0, w=w, h=h)


def _region_hit(region: tuple[Path, int, int, int, int]):  # type: ignore[no-untyped-def]
    from histoseek.search.hits import Hit

    path, x, y, w, h = region
    return Hit(score=1.0, kind="tile", id=-1, path=str(path), x=x, y=y, w=w, h=h)


def _labelled_cell(lib: Library, hit: Hit, query_label: str) -> GridCell:
    """Green/red by class; a hit without a label (a slide tile) is drawn neutral, not wrong."""
    good = None if hit.label is None else hit.label == query_label
    return GridCell(lib.hit_pixels(hit, CELL_PX), hit_caption(hit), good)
