"""The library's vector spaces and where each keeps its vectors in SQLite.

``image``: tiles by the library's encoder. ``text``: reports by the text encoder (report →
report search). ``joint``: reports by the image encoder's text tower (image ↔ text search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

VectorSpace = Literal["image", "text", "joint"]
VECTOR_SPACES: tuple[VectorSpace, ...] = get_args(VectorSpace)


@dataclass(frozen=True)
class SpaceTable:
    """Where one space's vectors live: ``SELECT {id_column}, vector FROM {table} {where}``."""

    table: str
    id_column: str
    where: str = ""  # extra condition, e.g. the space name for report vectors
    params: tuple[str, ...] = ()

    def select(self, columns: str) -> tuple[str, tuple[str, ...]]:
        sql = f"SELECT {columns} FROM {self.table}"
        return (f"{sql} WHERE {self.where}" if self.where else sql), self.params


SPACE_TABLES: dict[VectorSpace, SpaceTable] = {
    "image": SpaceTable("tiles", "id"),
    "text": SpaceTable("report_vectors", "report", "space = ?", ("text",)),
    "joint": SpaceTable("report_vectors", "report", "space = ?", ("joint",)),
}
