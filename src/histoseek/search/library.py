"""``Library``: the one API that the CLI, the service and scripts call.

A library is a folder: ``library.sqlite`` (records, vectors, manifest) and ``vectors/*.faiss``
(one FAISS index per vector space: ``image`` tiles, ``text`` reports by the text encoder,
``joint`` reports by a multimodal encoder's text tower).
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from histoseek.encoders.base import Encoder, EncoderInfo, l2_normalise
from histoseek.encoders.registry import create_encoder
from histoseek.errors import EmptyQueryError, InputError, LibraryError, LibraryMismatchError
from histoseek.index.rescore import RESCORE_FACTOR, rescore
from histoseek.index.store import RecordStore
from histoseek.index.vectors import FaissIndex, IndexKind
from histoseek.search.hits import Hit, IngestFailure, IngestReport
from histoseek.search.ingest import encode_files
from histoseek.search.inputs import (
    apply_labels,
    discover,
    parse_region,
    read_labels_csv,
    read_reports,
)
from histoseek.search.queries import (
    ImageQuery,
    aggregate_slides,
    group_by_slide,
    hit_from_row,
    query_tile,
    region_tiles,
    slide_tiles,
)
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import TilingConfig, read_region_tile

DB_NAME = "library.sqlite"
DEFAULT_ENCODER = "histoseek-base"  # the built-in model: offline, both towers
FORMAT_VERSION = 1
CHECKPOINT_SECONDS = 60.0
Target = Literal["tiles", "slides", "reports"]


class Library:
    """A persistent multimodal index of slides, tiles and reports."""

    def __init__(self, root: Path, store: RecordStore, device: str = "cpu") -> None:
        self.root, self.store, self.device = root, store, device
        self.manifest: dict[str, Any] = {
            k: store.get_meta(k) for k in ("format_version", "encoder", "text_encoder", "index",
                                           "tiling", "index_options")}
        if self.manifest["format_version"] is None:
            raise LibraryError(f"{root}: not a histoseek library (no manifest); create it first")
        self.tiling = TilingConfig(**self.manifest["tiling"])
        self._encoders: dict[str, Encoder] = {}
        self._indexes: dict[str, FaissIndex] = {}
        self._dirty: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, encoder: str = DEFAULT_ENCODER,
               pretrained: str | None = None,
               text_encoder: str = "minilm", index: IndexKind = "flat",
               tiling: TilingConfig | None = None, device: str = "cpu") -> Library:
        """Make a new library folder for ``encoder``; refuses a folder that is one already."""
        root = Path(path)
        if (root / DB_NAME).exists():
            raise LibraryError(f"{root}: a library exists here already; open it instead")
        if root.exists() and not root.is_dir():
            raise LibraryError(f"{root}: exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        FaissIndex(1, index)  # validates the index kind before anything is written
        enc = create_encoder(encoder, pretrained=pretrained, device=device)
        store = RecordStore(root / DB_NAME)
        store.set_meta({
            "format_version": FORMAT_VERSION,
            "encoder": {**enc.info.to_dict(), "pretrained": pretrained},
            "text_encoder": {"name": text_encoder, "info": None},
            "index": index,
            "index_options": {"ef_search": 128, "nprobe": 16},
            "tiling": asdict(tiling or TilingConfig()),
        })
        lib = cls(root, store, device)
        lib._encoders["image"] = enc
        return lib

    @classmethod
    def open(cls, path: str | Path, device: str = "cpu") -> Library:
        root = Path(path)
        if not (root / DB_NAME).is_file():
            raise LibraryError(f"{root}: no histoseek library here (missing {DB_NAME})")
        return cls(root, RecordStore(root / DB_NAME), device)

    @classmethod
    def open_or_create(cls, path: str | Path, encoder: str | None = None, **create_args: Any
                       ) -> Library:
        """Open ``path``, checking ``encoder`` matches, or create it (the CLI's ``index``)."""
        if (Path(path) / DB_NAME).is_file():
            lib = cls.open(path, device=create_args.get("device", "cpu"))
            if encoder is not None and encoder != lib.manifest["encoder"]["name"]:
                raise LibraryMismatchError(
                    f"{path}: library was built with encoder '{lib.manifest['encoder']['name']}'"
                    f", not '{encoder}'; use a new library folder for another encoder")
            return lib
        return cls.create(path, encoder=encoder or DEFAULT_ENCODER, **create_args)

    def close(self) -> None:
        self.save()
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoders and indexes ----------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The image (and maybe text) encoder the library was built with, checked on load."""
        if "image" not in self._encoders:
            stored = self.manifest["encoder"]
            enc = create_encoder(stored["name"], pretrained=stored.get("pretrained"),
                                 device=self.device)
            _check_same(self.root, EncoderInfo.from_dict(stored), enc.info)
            self._encoders["image"] = enc
        return self._encoders["image"]

    @property
    def text_encoder(self) -> Encoder:
        if "text" not in self._encoders:
            stored = self.manifest["text_encoder"]
            enc = create_encoder(stored["name"], device=self.device)
            if stored.get("info") is None:
                self.manifest["text_encoder"] = {"name": stored["name"],
                                                 "info": enc.info.to_dict()}
                self.store.set_meta({"text_encoder": self.manifest["text_encoder"]})
            else:
                _check_same(self.root, EncoderInfo.from_dict(stored["info"]), enc.info)
            self._encoders["text"] = enc
        return self._encoders["text"]

    def _space_dim(self, space: str) -> int:
        if space == "text":
            return self.text_encoder.dim
        return int(self.manifest["encoder"]["dim"])

    def _index(self, space: str) -> FaissIndex:
        """The space's FAISS index, reconciled with SQLite (the source of truth) on load."""
        if space in self._indexes:
            return self._indexes[space]
        dim, kind = self._space_dim(space), self.manifest["index"]
        options = self.manifest["index_options"]
        path = self.root / "vectors" / f"{space}.faiss"
        index = FaissIndex.load(path, dim, kind, **options) if path.is_file() else FaissIndex(
            dim, kind, **options)
        count, total, top = self.store.id_digest(space)
        ids = index.ids()
        if (len(ids), int(ids.sum()) if len(ids) else 0, int(ids.max()) if len(ids) else 0) != (
                count, total, top):
            index = self._reconcile(space, index, ids)
        self._indexes[space] = index
        return index

    def _reconcile(self, space: str, index: FaissIndex, ids: np.ndarray) -> FaissIndex:
        """Bring an index left stale by a crash back in line with SQLite."""
        db_ids = self.store.all_ids(space)
        extra = np.setdiff1d(ids, db_ids)
        if len(extra) and not index.remove(extra):
            return self._rebuild(space)
        missing = np.setdiff1d(db_ids, ids)
        dim = index.dim
        for start in range(0, len(missing), 65536):
            part = missing[start : start + 65536]
            index.add(part, self.store.vectors_for(space, part, dim))
        self._dirty.add(space)
        return index

    def _rebuild(self, space: str) -> FaissIndex:
        options = self.manifest["index_options"]
        index = FaissIndex(self._space_dim(space), self.manifest["index"], **options)
        for ids, vecs in self.store.iter_vectors(space, index.dim):
            index.add(ids, vecs)
        self._indexes[space] = index
        self._dirty.add(space)
        return index

    def save(self) -> None:
        """Write changed FAISS indexes atomically (temp file, fsync, rename)."""
        if not self._dirty:
            return
        (self.root / "vectors").mkdir(exist_ok=True)
        for space in sorted(self._dirty):
            self._indexes[space].save(self.root / "vectors" / f"{space}.faiss")
        self._dirty.clear()

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        with open(self.root / "library.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LibraryError(
                    f"{self.root}: another process is writing to this library") from None
            yield

    # -- adding and removing -----------------------------------------------------------------
    def add(self, paths: list[str | Path] | str | Path, labels: str | Path | None = None,
            mpp: float | None = None, metadata: dict[str, Any] | None = None,
            batch_size: int = 64, progress: bool = True) -> IngestReport:
        """Index files and folders (``DIR/<class>/<file>`` gives labels). Re-adding is a no-op.

        ``labels`` is a CSV ``path,label,source_id[,...]``; ``mpp`` overrides or supplies the
        scale. Bad files are skipped and listed in the report's ``failures``.
        """
        started = time.perf_counter()
        report = IngestReport()
        problems: list[tuple[str, str]] = []
        paths = [paths] if isinstance(paths, str | Path) else list(paths)
        skipped: list[Path] = []
        jobs = discover([Path(p) for p in paths], problems, skipped)
        if skipped:
            shown = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            report.notes.append(f"{len(skipped)} file(s) in the folders skipped: not a slide or "
                                f"image format histoseek reads ({shown})")
        if labels is not None:
            jobs = apply_labels(jobs, read_labels_csv(Path(labels)))
        if metadata:
            jobs = [type(j)(j.path, j.label, j.source_id,
                            tuple(sorted({**dict(j.metadata), **metadata}.items()))) for j in jobs]
        report.failures.extend(IngestFailure(p, m) for p, m in problems)
        index = self._index("image")
        bar = tqdm(total=len(jobs), unit="file", desc="indexing", disable=not progress,
                   dynamic_ncols=True)
        last_save = time.monotonic()
        with self._write_lock():
            for group in encode_files(jobs, self.encoder, self.tiling, mpp, self.store.has_sha,
                                      batch_size=batch_size):
                records = [r.record for r in group if r.record is not None]
                if records:
                    for rec, ids in zip(records, self.store.insert_sources(records), strict=True):
                        index.add(ids, rec.vectors)
                        report.tiles += len(ids)
                        report.added.append(rec.path)
                    self._dirty.add("image")
                for res in group:
                    if res.skipped:
                        report.unchanged.append(str(res.path))
                    elif res.problem:
                        report.failures.append(IngestFailure(str(res.path), res.problem))
                    elif res.note:
                        report.notes.append(f"{res.path.name}: {res.note}")
                        continue
                    bar.update(1)
                bar.set_postfix(tiles=report.tiles, failed=len(report.failures), refresh=False)
                if time.monotonic() - last_save > CHECKPOINT_SECONDS:
                    self.save()
                    last_save = time.monotonic()
            self.save()
        bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def add_reports(self, source: str | Path | list[Any]) -> IngestReport:
        """Index report texts (CSV ``report_id,text[,source_id,label]``, .txt, or a list)."""
        started = time.perf_counter()
        report = IngestReport(unit="reports")
        records = read_reports(source)
        known = self.store.report_shas()
        todo, shas = [], []
        for rec in records:
            sha = hashlib.sha256(rec.text.strip().encode()).hexdigest()
            if not rec.text.strip():
                report.failures.append(IngestFailure(rec.report_id, "report text is empty"))
            elif known.get(rec.report_id) == sha:
                report.unchanged.append(rec.report_id)
            else:
                todo.append(rec)
                shas.append(sha)
        if todo:
            texts = [r.text for r in todo]
            vectors = {"text": self.text_encoder.encode_texts(texts)}
            if self.encoder.has_texts:
                vectors["joint"] = self.encoder.encode_texts(texts)
            with self._write_lock():
                spaces = {s: self._index(s) for s in vectors}
                new_ids, old_ids = self.store.upsert_reports(todo, shas, vectors)
                for space, index in spaces.items():
                    if not index.remove(old_ids):
                        index = self._rebuild(space)
                    else:
                        index.add(new_ids, vectors[space])
                    self._dirty.add(space)
                self.save()
            report.added.extend(r.report_id for r in todo)
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, source: str | Path) -> int:
        """Delete a source (path, file name, sha256 or id) and its vectors; return tiles removed."""
        matches = self.store.find_sources(str(source))
        if not matches:
            raise InputError(f"{source}: no such source in {self.root}")
        with self._write_lock():
            index = self._index("image")
            ids = self.store.delete_sources(pk for pk, _ in matches)
            if not index.remove(ids):
                self._rebuild("image")
            self._dirty.add("image")
            self.save()
        return len(ids)

    # -- searching ---------------------------------------------------------------------------
    def search(self, image: ImageQuery | None = None, text: str | None = None,
               slide: str | Path | None = None,
               region: str | tuple[str | Path, int, int, int, int] | None = None,
               vector: np.ndarray | None = None, k: int = 10, where: dict[str, Any] | None = None,
               exclude: dict[str, Any] | None = None, target: Target | None = None,
               mpp: float | None = None, group: bool = False, max_query_tiles: int = 64,
               expand: bool = True) -> list[Hit]:
        """Run one query of any type; exactly one of image/text/slide/region/vector.

        ``target`` picks what comes back: ``tiles`` (default for images and regions),
        ``slides`` (default for slide queries), ``reports`` (default for text). ``where`` and
        ``exclude`` filter on label, source_id, path, slide, kind or metadata keys. ``vector``
        is an embedding already in the library's image space (float32 ``[dim]``). With
        ``expand``, a text naming a knowledge-base entity (or a synonym) is extended with that
        entity's attribute sentences before it is embedded (KEP-style query expansion).
        """
        given = [name for name, v in (("image", image), ("text", text), ("slide", slide),
                                      ("region", region), ("vector", vector)) if v is not None]
        if len(given) != 1:
            raise InputError(
                f"give exactly one of image, text, slide, region, vector (got {given or 'none'})")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        kind = given[0]
        target = target or {"text": "reports", "slide": "slides"}.get(kind, "tiles")
        if kind == "text":
            if not str(text).strip():
                raise EmptyQueryError("the text query is empty: give some words to search for")
            if expand:
                from histoseek.knowledge.tree import expand_query

                text = expand_query(str(text))
            if target == "reports":
                return self._search_space("text", self.text_encoder.encode_texts([text]), k,
                                          where, exclude)
            vectors = self.encoder.encode_texts([text])
        elif kind == "vector":
            vectors = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            if vectors.shape[1] != int(self.manifest["encoder"]["dim"]):
                raise InputError(f"vector has {vectors.shape[1]} dims; this library's image "
                                 f"space has {self.manifest['encoder']['dim']}")
        elif kind == "slide":
            _, tiles = slide_tiles(slide, self.tiling, mpp, max_query_tiles)
            vectors = self.encoder.encode_images(tiles)
            if target == "slides":
                per_query = self._search_many("image", vectors, max(4 * k, 32), where, exclude)
                return aggregate_slides(per_query, k)
        else:
            if kind == "region":
                path, x, y, w, h = parse_region(region) if isinstance(region, str) else region
                tiles = region_tiles(path, (x, y, w, h), self.tiling, mpp)
            else:
                tiles = query_tile(image, self.tiling.tile_px)
            vectors = self.encoder.encode_images(tiles)
        if target == "reports":
            if not self.encoder.has_texts:
                self.encoder.encode_texts(["probe"])  # raises NoTextTowerError, clearly worded
            query = l2_normalise(vectors.mean(axis=0, keepdims=True))
            return self._search_space("joint", query, k, where, exclude)
        if target == "slides" or (group and target == "tiles"):
            per_query = self._search_many("image", vectors, max(4 * k, 32), where, exclude)
            return aggregate_slides(per_query, k) if target == "slides" else group_by_slide(
                per_query[0])[:k]
        query = l2_normalise(vectors.mean(axis=0, keepdims=True))
        return self._search_space("image", query, k, where, exclude)

    def _search_space(self, space: str, query: np.ndarray, k: int,
                      where: dict[str, Any] | None, exclude: dict[str, Any] | None) -> list[Hit]:
        return self._search_many(space, query, k, where, exclude)[0]

    def _search_many(self, space: str, queries: np.ndarray, k: int,
                     where: dict[str, Any] | None, exclude: dict[str, Any] | None
                     ) -> list[list[Hit]]:
        index = self._index(space)
        allow = deny = None
        if where:
            allow = self.store.filtered_ids(space, where, exclude)
        elif exclude:
            deny = np.setdiff1d(self.store.all_ids(space),
                                self.store.filtered_ids(space, None, exclude))
        if allow is not None and len(allow) == 0:
            return [[] for _ in queries]
        if index.scores_are_estimates:
            _, candidates = index.search(queries, k * RESCORE_FACTOR, allow=allow, deny=deny)
            scores, ids = rescore(queries, candidates, lambda found: self.store.vectors_for(
                space, found, index.dim), min(k, candidates.shape[1]))
        else:
            scores, ids = index.search(queries, k, allow=allow, deny=deny)
        kind = "tile" if space == "image" else "report"
        rows_of = self.store.tile_rows if kind == "tile" else self.store.report_rows
        rows = rows_of(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [[hit_from_row(float(s), rows[int(i)], kind)
                 for s, i in zip(srow, irow, strict=True) if int(i) in rows]
                for srow, irow in zip(scores, ids, strict=True)]

    def hit_pixels(self, hit: Hit, px: int | None = None) -> np.ndarray:
        """The pixels a tile or slide hit points at, as uint8 ``[px, px, 3]`` (for pictures)."""
        target = hit.regions[0] if hit.kind == "slide" and hit.regions else hit
        if target.path is None or target.x is None:
            raise InputError(f"hit {hit.id} ({hit.kind}) has no pixels to show")
        with open_slide(target.path) as slide:
            return read_region_tile(slide, target.x, target.y, target.w or 1, target.h or 1,
                                    px or self.tiling.tile_px)

    # -- describing --------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts and settings, as ``histoseek info`` prints them."""
        enc = self.manifest["encoder"]
        return {
            "path": str(self.root),
            **self.store.counts(),
            "labels": self.store.labels(),
            "encoder": {"name": enc["name"], "version": enc["version"], "dim": enc["dim"],
                        "modalities": enc["modalities"], "pretrained": enc.get("pretrained")},
            "text_encoder": self.manifest["text_encoder"]["name"],
            "index": self.manifest["index"],
            "tiling": self.manifest["tiling"],
        }


def _check_same(root: Path, stored: EncoderInfo, loaded: EncoderInfo) -> None:
    if (stored.name, stored.version, stored.dim, stored.preprocess) != (
            loaded.name, loaded.version, loaded.dim, loaded.preprocess):
        raise LibraryMismatchError(
            f"{root}: library vectors come from {stored.name} {stored.version} ({stored.dim}-d) "
            f"but the encoder loaded now is {loaded.name} {loaded.version} ({loaded.dim}-d); "
            "re-index into a new library or load the original weights")
