"""What an ingest (or a removal) did, for the summary line, the CLI's warnings and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Removed:
    """What ``Library.remove`` deleted: a source with its tiles, or reports."""

    sources: int = 0
    tiles: int = 0
    reports: int = 0


@dataclass(frozen=True)
class IngestFailure:
    path: str
    problem: str


@dataclass
class IngestReport:
    """Counts and per-file outcomes of one ``add`` or ``add_reports``."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files of formats histoseek does not read
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
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            head += f", {len(self.skipped)} skipped (not a slide or image format: {shown})"
        if self.unit != "files":
            return f"{head} in {self.seconds:.1f} s"
        return (f"{head}; {self.tiles} tiles in {self.seconds:.1f} s "
                f"({self.tiles_per_second:.1f} tiles/s)")

    def grouped_notes(self) -> list[str]:
        """Notes with the same wording folded into one line with a count."""
        by_text: dict[str, list[str]] = {}
        for note in self.notes:
            name, sep, text = note.partition(": ")
            if not sep:
                name, text = "", note
            by_text.setdefault(text, []).append(name)
        return [text if names == [""] else f"{names[0]}: {text}" if len(names) == 1
                else f"{len(names)} files ({names[0]}, ...): {text}"
                for text, names in by_text.items()]
