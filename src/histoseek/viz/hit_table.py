"""Hits as a terminal table (the CLI and the demo print the same one)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Column, Table

from histoseek.search.hits import Hit

_console = Console(soft_wrap=True)


def hits_table(hits: Sequence[Hit], title: str | None = None) -> Table:
    """Columns follow the hit kind. Ids and paths fold onto a second line rather than being
    cut at 80 columns: people copy them into the next command."""
    reports = bool(hits) and all(h.kind == "report" for h in hits)
    ident = Column("report" if reports else "source", overflow="fold", min_width=12)
    columns: list[Column | str] = ["#", "score", "kind", ident]
    columns += ["label", Column("text", ratio=1)] if reports else [
        Column("x,y,w,h (level 0)", no_wrap=True), "mpp", Column("label", overflow="fold")]
    table = Table(*columns, title=title, title_justify="left")
    for rank, hit in enumerate(hits, 1):
        if reports:
            text = hit.text or ""
            row = [hit.report_id or "", hit.label or "",
                   text[:90] + ("…" if len(text) > 90 else "")]
        else:
            where = hit if hit.x is not None or not hit.regions else hit.regions[0]
            box = "" if where.x is None else f"{where.x},{where.y},{where.w},{where.h}"
            row = [hit.slide or "", box, "" if where.mpp is None else f"{where.mpp:.3g}",
                   hit.label or ""]
        table.add_row(str(rank), f"{hit.score:.3f}", hit.kind, *row)
    return table


def print_hits(hits: Sequence[Hit], title: str | None = None,
               console: Console | None = None) -> None:
    out = console or _console
    out.print(hits_table(hits, title))
    if not hits:
        out.print("no hits")
