"""Typed search results. Coordinates are level-0 pixels of the source, with its tile mpp."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

HitKind = Literal["tile", "region", "slide", "image", "report"]
SourceKind = Literal["slide", "image"]


@dataclass(slots=True)  # not frozen: a frozen init costs 15 us a hit, on every search
class Hit:
    """One search result.

    ``tile`` hits locate a tile inside its source (``x, y, w, h`` level-0 px); ``region`` hits
    are neighbouring tile hits merged into one box, their tiles in ``regions``; ``slide`` and
    ``image`` hits rank a whole source (a pyramid slide or a plain image) and list its best
    tiles in ``regions`` (for a slide query, each with the ``query_box`` it matched);
    ``report`` hits carry ``report_id`` and text. ``slide`` names the source: its labels-CSV
    ``slide_id`` or else its file name.
    """

    score: float
    kind: HitKind
    id: int
    path: str | None = None
    source_id: str | None = None
    slide: str | None = None
    x: int | None = None
    y: int | None = None
    w: int | None = None
    h: int | None = None
    mpp: float | None = None
    label: str | None = None
    text: str | None = None
    report_id: str | None = None
    source_kind: SourceKind | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    regions: tuple[Hit, ...] = ()
    #: on a region of a slide → slide hit: the query slide's level-0 box it matched
    query_box: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = round(self.score, 6)
        data["regions"] = [r.to_dict() for r in self.regions]
        return data


def clip_score(score: float) -> float:
    """Inner products of unit vectors in float32 overshoot 1 by an ulp or two."""
    return -1.0 if score < -1.0 else 1.0 if score > 1.0 else score


def report_hit(score: float, row: dict[str, Any], slide_paths: dict[str, str]) -> Hit:
    """A report hit from a ``RecordStore.report_rows`` row; a ``slide_id`` column links it to
    its slide (``slide``), and ``path`` is that slide's file when it is indexed."""
    slide = row["metadata"].get("slide_id")
    return Hit(score=clip_score(score), kind="report", id=int(row["id"]),
               source_id=row["source_id"], report_id=row["report_id"], label=row["label"],
               text=row["text"], metadata=row["metadata"],
               slide=None if slide is None else str(slide),
               path=None if slide is None else slide_paths.get(str(slide)))


#: the fields every tile hit of one source shares, in ``source_fields``'s order
SOURCE_FIELDS = ("path", "source_id", "slide", "label", "source_kind", "metadata")


def source_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every tile hit of one source shares, from a ``RecordStore`` source row."""
    meta = row["metadata"]
    return dict(zip(SOURCE_FIELDS, (row["path"], row["source_id"],
                                    meta.get("slide_id") or row["name"], row["label"],
                                    row["kind"], meta), strict=True))
