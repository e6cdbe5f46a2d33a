"""Tile hits are built positionally on the search path: the order must stay Hit's."""

from __future__ import annotations

from dataclasses import fields

from histoseek.search.hits import SOURCE_FIELDS, Hit, source_fields


def test_positional_tile_hit_order_matches_hit_fields() -> None:
    names = [f.name for f in fields(Hit)]
    # Searcher._ranked passes: score, kind, id, path, source_id, slide, x, y, w, h, mpp,
    # label, text, report_id, source_kind, metadata
    assert names[:16] == ["score", "kind", "id", *SOURCE_FIELDS[:3], "x", "y", "w", "h",
                          "mpp", SOURCE_FIELDS[3], "text", "report_id", *SOURCE_FIELDS[4:]]


def test_source_fields_keys_and_slide_name() -> None:
    row = {"path": "/d/a.svs", "source_id": "P1", "name": "a.svs", "label": "normal",
           "kind": "slide", "metadata": {"slide_id": "S-7"}}
    got = source_fields(row)
    assert tuple(got) == SOURCE_FIELDS
    assert got["slide"] == "S-7" and got["source_kind"] == "slide"
    assert source_fields({**row, "metadata": {}})["slide"] == "a.svs"
