"""Typed search results. Coordinates are level-0 pixels of the source, with its tile mpp."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

HitKind = Literal["tile", "slide", "report"]


@dataclass(frozen=True)
class Hit:
    """One search result.

    ``tile`` hits locate a tile inside its source (``x, y, w, h`` level-0 px); ``slide`` hits
    aggregate a source and list their best tiles in ``regions``; ``report`` hits carry text.
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
    metadata: dict[str, Any] = field(default_factory=dict)
    regions: tuple[Hit, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = [r.to_dict() for r in self.regions]
        return data


@dataclass(frozen=True)
class IngestFailure:
    path: str
    problem: str


@dataclass
class IngestReport:
    """What an ``add`` did, for the summary line and for scripts."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tiles: int = 0
    seconds: float = 0.0
    unit: str = "files"

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        head = (f"{len(self.added)} {self.unit} added, {len(self.unchanged)} already indexed, "
                f"{len(self.failures)} failed")
        if self.unit != "files":
            return f"{head} in {self.seconds:.1f} s"
        return (f"{head}; {self.tiles} tiles in {self.seconds:.1f} s "
                f"({self.tiles_per_second:.1f} tiles/s)")

    def grouped_notes(self) -> list[str]:
        """Notes with the same wording folded into one line with a count."""
        by_text: dict[str, list[str]] = {}
        for note in self.notes:
            name, _, text = note.partition(": ")
            by_text.setdefault(text, []).append(name)
        return [f"{names[0]}: {text}" if len(names) == 1
                else f"{len(names)} files ({names[0]}, ...): {text}"
                for text, names in by_text.items()]
