"""SQLite records of a library: sources, tiles, reports, their vectors and the manifest.

SQLite is the source of truth. Every vector is kept here as a float32 BLOB beside its record,
so the FAISS files are a derived cache that can always be reconciled or rebuilt; a crash
between the two never loses or duplicates a record.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from histoseek.errors import InputError, LibraryError
from histoseek.index.migrations import migrate
from histoseek.index.slide_summary import SlideSummary, SummaryKind, summarise_slide
from histoseek.index.spaces import SPACE_TABLES, VectorSpace
from histoseek.index.vectors import unbroken_run_start

# Filter keys that are real columns; anything else is looked up in the metadata JSON.
SOURCE_COLUMNS = {"label": "s.label", "source_id": "s.source_id", "path": "s.path",
                  "slide": "COALESCE(json_extract(s.metadata, '$.slide_id'), s.name)",
                  "name": "s.name", "kind": "s.kind", "sha256": "s.sha256"}
REPORT_COLUMNS = {"label": "r.label", "source_id": "r.source_id", "report_id": "r.report_id"}


@dataclass
class SourceRecord:
    """One ingested file, with its tiles' boxes (level-0 px) and vectors."""

    path: str
    name: str
    sha256: str
    kind: str
    width: int
    height: int
    mpp: float | None
    mpp_source: str
    label: str | None
    source_id: str | None
    metadata: dict[str, Any]
    boxes_l0: np.ndarray  # [n, 4] int64
    tile_mpp: float | None
    tissue: np.ndarray  # [n] float32
    vectors: np.ndarray | None = None  # [n, d] float32


@dataclass(frozen=True)
class TileTable:
    """All tiles of a library as arrays, sorted by id (``mpp`` NaN where unknown)."""

    ids: np.ndarray
    sources: np.ndarray
    boxes: np.ndarray
    mpp: np.ndarray
    #: ``[n, 5]`` int64 rows (x, y, w, h, source): one cache line per tile for hits
    places: np.ndarray

    #: the first id when ids are one unbroken run (no removals since), else None: then a
    #: subtraction, not a binary search, finds a tile's row
    first_id: int | None = None

    def positions(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of ``wanted`` ids and which of them exist."""
        n = len(self.ids)
        if self.first_id is not None:
            pos = wanted - self.first_id
            found = (pos >= 0) & (pos < n)
            return pos[found], found
        pos = np.minimum(np.searchsorted(self.ids, wanted), n - 1)
        found = self.ids[pos] == wanted
        return pos[found], found


@dataclass
class ReportRecord:
    report_id: str
    text: str
    source_id: str | None = None
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class RecordStore:
    """Thin typed layer over the library's SQLite file (WAL, explicit transactions)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writes = 0  # own commits: PRAGMA data_version only counts other connections'
        self._others = -1  # PRAGMA data_version as last read
        self._version_cursors = threading.local()  # a kept cursor: half the cost of execute
        self._tiles: tuple[tuple[int, int], TileTable] | None = None
        self._sources: dict[int, dict[str, Any]] | None = None
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            # a 512-d tile row (~2.1 KB) takes a 4 KB page alone; 16 KB pages hold 7 (89%
            # full). Only takes effect when the file is created.
            self.conn.execute("PRAGMA page_size=16384")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{path}: not a histoseek library database ({exc})") from exc

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing block: committed on success, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self._writes += 1

    # -- manifest ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, values: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    # -- sources and tiles -------------------------------------------------------------------
    def shas(self) -> set[str]:
        """Every indexed file's sha256 (what a Ray ingest's workers skip)."""
        return {r[0] for r in self.conn.execute("SELECT sha256 FROM sources")}

    def has_sha(self, sha256: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sources WHERE sha256 = ?", (sha256,)).fetchone()
        return row is not None

    def insert_sources(self, records: Sequence[SourceRecord]) -> list[np.ndarray]:
        """Insert sources with their tiles in one transaction; return each one's tile ids."""
        all_ids: list[np.ndarray] = []
        with self.transaction() as conn:
            for rec in records:
                cur = conn.execute(
                    "INSERT INTO sources (path, name, sha256, kind, width, height, mpp, mpp_source,"
                    " label, source_id, metadata, n_tiles, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.path, rec.name, rec.sha256, rec.kind, rec.width, rec.height, rec.mpp,
                     rec.mpp_source, rec.label, rec.source_id, json.dumps(rec.metadata),
                     len(rec.boxes_l0), _now()),
                )
                source_pk = cur.lastrowid
                ids = []
                for box, tissue, vector in zip(rec.boxes_l0, rec.tissue, rec.vectors, strict=True):
                    blob = _blob(vector)
                    cur = conn.execute(
                        "INSERT INTO tiles (source, x, y, w, h, mpp, tissue, vector, crc)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (source_pk, *(int(v) for v in box), rec.tile_mpp, float(tissue),
                         blob, zlib.crc32(blob)),
                    )
                    ids.append(cur.lastrowid)
                tile_ids = np.asarray(ids, np.int64)
                all_ids.append(tile_ids)
                self._insert_summaries(conn, source_pk, summarise_slide(
                    tile_ids, rec.boxes_l0, rec.vectors))
        return all_ids

    # -- slide summaries (index.slide_summary) -----------------------------------------------
    @staticmethod
    def _insert_summaries(conn: sqlite3.Connection, source_pk: int,
                          summaries: dict[SummaryKind, SlideSummary]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO slide_summaries (source, kind, tile_ids, boxes, weights,"
            " vectors) VALUES (?, ?, ?, ?, ?, ?)",
            [(source_pk, kind, s.tile_ids.astype(np.int64).tobytes(),
              s.boxes.astype(np.int64).tobytes(), s.weights.astype(np.float32).tobytes(),
              _blob(s.vectors)) for kind, s in summaries.items()])

    def sources_without_summaries(self) -> list[int]:
        """Sources indexed before slide summaries existed (or whose summaries are missing)."""
        return [r[0] for r in self.conn.execute(
            "SELECT s.id FROM sources s WHERE s.n_tiles > 0 AND NOT EXISTS"
            " (SELECT 1 FROM slide_summaries m WHERE m.source = s.id) ORDER BY s.id")]

    def summarise_missing(self, dim: int, lock: AbstractContextManager[Any]) -> None:
        """Summarise, under the writer's ``lock``, every source that has no summaries."""
        missing = self.sources_without_summaries()
        if missing:
            with lock:
                self.write_summaries(missing, dim)

    def write_summaries(self, source_pks: Sequence[int], dim: int) -> None:
        """Summarise ``source_pks`` from their stored tiles, in one transaction each."""
        for pk in source_pks:
            rows = self.conn.execute(
                "SELECT id, x, y, w, h, vector FROM tiles WHERE source = ? ORDER BY id",
                (int(pk),)).fetchall()
            if not rows:
                continue
            ids = np.array([r[0] for r in rows], np.int64)
            boxes = np.array([r[1:5] for r in rows], np.int64)
            vectors = np.frombuffer(b"".join(r[5] for r in rows), np.float32).reshape(-1, dim)
            with self.transaction() as conn:
                self._insert_summaries(conn, int(pk), summarise_slide(ids, boxes, vectors))

    def summaries(self, kind: SummaryKind, dim: int, sources: Sequence[int] | None = None
                  ) -> dict[int, SlideSummary]:
        """Stored summaries of one kind by source id (all sources, or ``sources``)."""
        sql = ("SELECT source, tile_ids, boxes, weights, vectors FROM slide_summaries"
               " WHERE kind = ?")
        params: list[Any] = [kind]
        chunks = [None] if sources is None else [
            [int(s) for s in sources[i : i + 900]] for i in range(0, len(sources), 900)]
        out: dict[int, SlideSummary] = {}
        for part in chunks:
            q = sql if part is None else f"{sql} AND source IN ({','.join('?' * len(part))})"
            for source, ids, boxes, weights, vectors in self.conn.execute(
                    q, params + ([] if part is None else part)):
                out[int(source)] = SlideSummary(
                    kind, np.frombuffer(ids, np.int64),
                    np.frombuffer(boxes, np.int64).reshape(-1, 4),
                    np.frombuffer(weights, np.float32),
                    np.frombuffer(vectors, np.float32).reshape(-1, dim))
        return out

    def summary_bytes(self) -> dict[str, int]:
        """Stored bytes per summary kind, over the whole library."""
        rows = self.conn.execute(
            "SELECT kind, total(length(tile_ids) + length(boxes) + length(weights)"
            " + length(vectors)) FROM slide_summaries GROUP BY kind")
        return {kind: int(total) for kind, total in rows}

    def filtered_sources(self, where: dict[str, Any] | None, exclude: dict[str, Any] | None
                         ) -> np.ndarray:
        """Source ids matching ``where`` and not ``exclude`` (keys checked as for tiles)."""
        return self.filtered_ids("image", where, exclude, sources_only=True)

    def source_by_path(self, path: str | Path) -> int | None:
        """The id of the source indexed from ``path`` (resolved), if any."""
        row = self.conn.execute("SELECT id FROM sources WHERE path = ? ORDER BY id LIMIT 1",
                                (str(Path(path).resolve()),)).fetchone()
        return None if row is None else int(row[0])

    def slide_paths(self, slide_ids: Iterable[str]) -> dict[str, str]:
        """Indexed file of each slide id (its labels-CSV ``slide_id``, else its file name)."""
        wanted = sorted(set(slide_ids))
        out: dict[str, str] = {}
        for start in range(0, len(wanted), 900):
            part = wanted[start : start + 900]
            for slide, path in self.conn.execute(
                    f"SELECT {SOURCE_COLUMNS['slide']}, s.path FROM sources s WHERE "
                    f"{SOURCE_COLUMNS['slide']} IN ({','.join('?' * len(part))})", part):
                out.setdefault(str(slide), str(path))
        return out

    def find_sources(self, key: str) -> list[tuple[int, str]]:
        """Sources matching a path, file name, sha256 or numeric id."""
        rows = self.conn.execute(
            "SELECT id, path FROM sources WHERE path = ? OR name = ? OR sha256 = ?"
            " OR CAST(id AS TEXT) = ?",
            (str(Path(key).resolve()) if Path(key).exists() else key, key, key, key),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def delete_sources(self, source_pks: Iterable[int]) -> np.ndarray:
        """Delete sources and their tiles atomically; return the removed tile ids."""
        pks = list(source_pks)
        marks = ",".join("?" * len(pks))
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM tiles WHERE source IN ({marks})", pks)]
            conn.execute(f"DELETE FROM sources WHERE id IN ({marks})", pks)
        return np.asarray(ids, np.int64)

    def list_sources(self) -> list[dict[str, Any]]:
        """Every source with its settings and tile count, oldest first (``histoseek list``)."""
        cur = self.conn.execute(
            "SELECT id, name, kind, label, source_id, mpp, n_tiles, width, height, path, sha256,"
            " metadata, added_at FROM sources ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
        for row in rows:
            row["metadata"] = json.loads(row["metadata"] or "{}")
        return rows

    # -- reports -----------------------------------------------------------------------------
    def upsert_reports(
        self, records: Sequence[ReportRecord], shas: Sequence[str],
        vectors: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Insert or replace reports; return (new ids, ids of the replaced rows)."""
        ids = [r.report_id for r in records]
        if len(set(ids)) != len(ids):  # the second would replace the first mid-transaction
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise InputError(f"report_id given twice in one batch: {', '.join(twice[:5])}")
        new_ids, old_ids = [], []
        with self.transaction() as conn:
            for i, (rec, sha) in enumerate(zip(records, shas, strict=True)):
                row = conn.execute(
                    "SELECT id FROM reports WHERE report_id = ?", (rec.report_id,)).fetchone()
                if row is not None:
                    old_ids.append(row[0])
                    conn.execute("DELETE FROM reports WHERE id = ?", (row[0],))
                cur = conn.execute(
                    "INSERT INTO reports (report_id, text, sha256, source_id, label, metadata,"
                    " added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rec.report_id, rec.text, sha, rec.source_id, rec.label,
                     json.dumps(rec.metadata), _now()),
                )
                new_ids.append(cur.lastrowid)
                for space, matrix in vectors.items():
                    blob = _blob(matrix[i])
                    conn.execute(
                        "INSERT INTO report_vectors (report, space, vector, crc)"
                        " VALUES (?, ?, ?, ?)", (cur.lastrowid, space, blob, zlib.crc32(blob)))
        return np.asarray(new_ids, np.int64), np.asarray(old_ids, np.int64)

    def find_reports(self, key: str) -> list[int]:
        """Row ids of reports whose ``report_id`` (or numeric row id) is ``key``."""
        rows = self.conn.execute(
            "SELECT id FROM reports WHERE report_id = ? OR CAST(id AS TEXT) = ?", (key, key))
        return [int(r[0]) for r in rows]

    def delete_reports(self, ids: Sequence[int]) -> None:
        marks = ",".join("?" * len(ids))
        with self.transaction() as conn:
            conn.execute(f"DELETE FROM reports WHERE id IN ({marks})", [int(i) for i in ids])

    def report_shas(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT report_id, sha256 FROM reports").fetchall())

    # -- vectors by space ----------------------------------------------------------------------
    def iter_vectors(self, space: VectorSpace, dim: int, chunk: int = 65536
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) chunks of one space, for rebuilding an index."""
        table = SPACE_TABLES[space]
        sql, params = table.select(f"{table.id_column}, vector")
        cur = self.conn.execute(sql + " ORDER BY 1", params)
        while rows := cur.fetchmany(chunk):
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, dim)
            yield ids, vecs

    def corrupt_vectors(self, space: VectorSpace, chunk: int = 65536) -> list[int]:
        """Ids whose stored vector no longer matches the CRC32 written with it."""
        table = SPACE_TABLES[space]
        sql, params = table.select(f"{table.id_column}, vector, crc")
        bad = []
        cur = self.conn.execute(sql + (" AND" if table.where else " WHERE")
                                + " crc IS NOT NULL", params)
        while rows := cur.fetchmany(chunk):
            bad.extend(i for i, blob, crc in rows if zlib.crc32(blob) != crc)
        return bad

    def integrity_problems(self) -> list[str]:
        """SQLite's own structural check (every page and index), empty when sound."""
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def vectors_for(self, space: VectorSpace, ids: np.ndarray, dim: int) -> np.ndarray:
        table = SPACE_TABLES[space]
        out = np.zeros((len(ids), dim), np.float32)
        pos = {int(i): n for n, i in enumerate(ids)}
        sql, params = table.select(f"{table.id_column}, vector")
        joiner = " AND " if table.where else " WHERE "
        for start in range(0, len(ids), 900):
            part = [int(i) for i in ids[start : start + 900]]
            q = f"{sql}{joiner}{table.id_column} IN ({','.join('?' * len(part))})"
            for row_id, blob in self.conn.execute(q, (*params, *part)):
                out[pos[row_id]] = np.frombuffer(blob, np.float32)
        return out

    def id_digest(self, space: VectorSpace) -> tuple[int, int, int]:
        """(count, sum, max) of ids: with monotonic ids this pins the id set exactly."""
        table = SPACE_TABLES[space]
        col = table.id_column
        sql, params = table.select(f"count(*), sum({col}), max({col})")
        row = self.conn.execute(sql, params).fetchone()
        return int(row[0]), int(row[1] or 0), int(row[2] or 0)

    def all_ids(self, space: VectorSpace) -> np.ndarray:
        table = SPACE_TABLES[space]
        sql, params = table.select(table.id_column)
        return np.fromiter((r[0] for r in self.conn.execute(sql, params)), np.int64)

    # -- filters -----------------------------------------------------------------------------
    def filter_fields(self, space: VectorSpace) -> list[str]:
        """Keys a filter on ``space`` can use: record columns and metadata keys present."""
        columns, table = (SOURCE_COLUMNS, "sources") if space == "image" else (
            REPORT_COLUMNS, "reports")
        keys = {r[0] for r in self.conn.execute(
            f"SELECT DISTINCT j.key FROM {table}, json_each({table}.metadata) AS j")}
        return sorted(set(columns) | keys)

    def filtered_ids(self, space: VectorSpace, where: dict[str, Any] | None,
                     exclude: dict[str, Any] | None, sources_only: bool = False) -> np.ndarray:
        """Ids in ``space`` whose records match ``where`` and not ``exclude`` (with
        ``sources_only``, the matching source ids instead of their tiles).

        A key that is neither a column nor a metadata key of any record is refused: a typo
        would otherwise match nothing (``where``) or everything (``exclude``) without a word.
        """
        if space == "image":  # sources are filtered in SQL, their tiles in numpy
            base = "SELECT s.id FROM sources s"
            columns = SOURCE_COLUMNS
            meta_col = "s.metadata"
        else:
            base = ("SELECT v.report FROM report_vectors v JOIN reports r ON v.report = r.id"
                    " WHERE v.space = ?")
            columns, meta_col = REPORT_COLUMNS, "r.metadata"
        unknown = [k for k in {**(where or {}), **(exclude or {})} if k not in columns]
        if unknown:
            fields = self.filter_fields(space)
            bad = [k for k in unknown if k.split(".")[0] not in fields]  # a.b: a JSON path
            if bad:
                what = "tiles" if space == "image" else "reports"
                raise InputError(
                    f"unknown filter key {', '.join(repr(k) for k in bad)}: no {what} in this "
                    f"library have it; fields that exist: {', '.join(fields)}")
        clauses, params = [], [] if space == "image" else [space]
        for filters, negate in ((where, False), (exclude, True)):
            for key, value in (filters or {}).items():
                column = columns.get(key)
                if column is None:
                    if not key.replace("_", "").replace("-", "").replace(".", "").isalnum():
                        raise InputError(f"filter key '{key}' is not a plain name")
                    column = f"json_extract({meta_col}, '$.{key}')"
                values = list(value) if isinstance(value, list | tuple | set) else [value]
                marks = ",".join("?" * len(values))
                test = f"{column} IN ({marks})"
                clauses.append(f"({column} IS NULL OR NOT {test})" if negate else test)
                params.extend(str(v) if not isinstance(v, int | float) else v for v in values)
        if clauses:
            base += (" AND " if space != "image" else " WHERE ") + " AND ".join(clauses)
        found = np.fromiter((r[0] for r in self.conn.execute(base, params)), np.int64)
        if space != "image" or sources_only:
            return found
        table = self._tile_table()
        return table.ids[np.isin(table.sources, found)]

    def data_version(self) -> tuple[int, int]:
        """Changes whenever this or another connection commits: a key for derived caches."""
        cursor = getattr(self._version_cursors, "cursor", None)
        if cursor is None:
            cursor = self._version_cursors.cursor = self.conn.cursor()
        self._others = cursor.execute("PRAGMA data_version").fetchone()[0]
        return self._writes, self._others

    def _tile_table(self, recheck: bool = True) -> TileTable:
        """Every tile's id, source and box in numpy, cached until this or another connection
        writes: filters then cost a small query over sources and a search's hits no join.
        ``recheck=False`` trusts the version the latest ``data_version()`` read."""
        version = self.data_version() if recheck else (self._writes, self._others)
        if self._tiles is None or self._tiles[0] != version:
            rows = self.conn.execute(
                "SELECT id, source, x, y, w, h, mpp FROM tiles ORDER BY id").fetchall()
            table = np.array(rows, dtype=np.float64).reshape(-1, 7)
            ids = table[:, 0].astype(np.int64)
            self._tiles = (version, TileTable(
                ids=ids, sources=table[:, 1].astype(np.int64),
                boxes=table[:, 2:6].astype(np.int64), mpp=table[:, 6],
                places=np.ascontiguousarray(table[:, [2, 3, 4, 5, 1]].astype(np.int64)),
                first_id=unbroken_run_start(ids)))
            self._sources = None
        return self._tiles[1]

    def _source_rows(self, table: TileTable | None = None) -> dict[int, dict[str, Any]]:
        """Every source row by id, cached with (and cleared with) the tile table."""
        if table is None:
            self._tile_table()
        if self._sources is None:
            cur = self.conn.execute(
                "SELECT id, path, name, label, source_id, metadata, kind FROM sources")
            names = [d[0] for d in cur.description]
            self._sources = {}
            for row in cur:
                rec = dict(zip(names, row, strict=True))
                rec["metadata"] = json.loads(rec["metadata"] or "{}")
                self._sources[rec["id"]] = rec
        return self._sources

    # -- hits --------------------------------------------------------------------------------
    def tile_places(self, ids: Sequence[int], recheck: bool = True
                    ) -> tuple[dict[int, tuple[int, int, int, int, float | None, int]],
                               dict[int, dict[str, Any]]]:
        """``({tile id: (x, y, w, h, mpp, source id)}, {source id: source row})`` from the
        cached tables: no SQL per search but one version check (none with ``recheck=False``,
        for a caller that has just read ``data_version()``: one PRAGMA costs ~20 us on the
        cold cache an index search leaves). Ids deleted since the index was searched are
        left out."""
        table = self._tile_table(recheck)
        sources = self._source_rows(table)
        if len(table.ids) == 0:
            return {}, sources
        if table.first_id is not None and len(ids) <= 256:
            # a search's few hits: plain Python beats five numpy calls on the cold cache
            # an index search leaves behind (24 vs 48 us for 10 ids)
            first, n = table.first_id, len(table.ids)
            found_ids = [i for i in ids if 0 <= i - first < n]
            pos: Any = [i - first for i in found_ids]
        else:
            wanted = np.asarray(ids, np.int64)
            pos, found = table.positions(wanted)
            found_ids = wanted[found].tolist()
        return {tile_id: (x, y, w, h, None if mpp != mpp else mpp, src)  # NaN: unknown mpp
                for tile_id, (x, y, w, h, src), mpp in zip(
                    found_ids, table.places[pos].tolist(), table.mpp[pos].tolist(),
                    strict=True)}, sources

    def source_tiles(self, source: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and level-0 boxes ``[n, 4]`` of one source's tiles (cached tile table)."""
        table = self._tile_table()
        mask = table.sources == source
        return table.ids[mask], table.boxes[mask]

    def tile_sources(self, ids: Sequence[int]) -> np.ndarray:
        """The source id of each tile id (-1 for ids no longer in the library)."""
        table = self._tile_table()
        wanted = np.asarray(ids, np.int64)
        out = np.full(len(wanted), -1, np.int64)
        if len(table.ids):
            pos, found = table.positions(wanted)
            out[found] = table.sources[pos]
        return out

    def tile_rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Tile fields merged with their source's row, by tile id (for scripts and tests)."""
        places, sources = self.tile_places(ids)
        return {i: {**sources[src], "id": i, "x": x, "y": y, "w": w, "h": h, "mpp": mpp}
                for i, (x, y, w, h, mpp, src) in places.items()}

    def report_rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return self._rows(
            "SELECT id, report_id, text, source_id, label, metadata FROM reports"
            " WHERE id IN ({})", ids)

    def _rows(self, sql: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Rows by id; one query per 900 ids, metadata JSON parsed once per distinct text
        (tiles of one source share it): this runs on every search."""
        out: dict[int, dict[str, Any]] = {}
        parsed: dict[str, dict[str, Any]] = {"{}": {}, "": {}}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            cur = self.conn.execute(sql.format(",".join("?" * len(part))), part)
            names = [d[0] for d in cur.description]
            for row in cur:
                rec = dict(zip(names, row, strict=True))
                text = rec["metadata"] or ""
                meta = parsed.get(text)
                if meta is None:
                    meta = parsed[text] = json.loads(text)
                rec["metadata"] = meta
                out[rec["id"]] = rec
        return out

    def counts(self) -> dict[str, int]:
        q = self.conn.execute
        return {
            "sources": q("SELECT count(*) FROM sources").fetchone()[0],
            "slides": q("SELECT count(*) FROM sources WHERE kind = 'slide'").fetchone()[0],
            "images": q("SELECT count(*) FROM sources WHERE kind = 'image'").fetchone()[0],
            "tiles": q("SELECT count(*) FROM tiles").fetchone()[0],
            "reports": q("SELECT count(*) FROM reports").fetchone()[0],
        }

    def labels(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT label, count(*) FROM sources WHERE label IS NOT NULL GROUP BY label")
        return dict(rows.fetchall())

    # -- reports listing and the service's audit log (migration 003) -------------------------
    def list_reports(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Reports oldest first, without vectors; ``limit``/``offset`` page through them."""
        cur = self.conn.execute(
            "SELECT id, report_id, text, source_id, label, metadata, added_at FROM reports"
            " ORDER BY id LIMIT ? OFFSET ?", (-1 if limit is None else int(limit), int(offset)))
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
        for row in rows:
            row["metadata"] = json.loads(row["metadata"] or "{}")
        return rows

    def log_write(self, token_id: str, action: str, source: str | None, outcome: str = "ok",
                  detail: dict[str, Any] | None = None) -> None:
        """Record one write through the service: who (a token's hash prefix, never the token),
        what, on which source, and how it ended."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO audit_log (at, token_id, action, source, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), token_id, action, source, outcome, json.dumps(detail or {})))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` audit entries, newest first."""
        cur = self.conn.execute(
            "SELECT id, at, token_id, action, source, outcome, detail FROM audit_log"
            " ORDER BY id DESC LIMIT ?", (int(limit),))
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
        for row in rows:
            row["detail"] = json.loads(row["detail"] or "{}")
        return rows
