"""``Library``: the one API that the CLI, the service and scripts call.

A library is a folder: ``library.sqlite`` (records, vectors, manifest) and ``vectors/*.faiss``
(one FAISS index per vector space, see ``index.spaces``), or a Milvus collection per space
(``index.backends``). This class only wires the parts
together: ``ingest`` adds, ``search`` queries, ``index`` stores.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histoseek.delegation import delegates_to
from histoseek.encoders.base import Encoder, EncoderInfo
from histoseek.encoders.identity import load_stored_encoder, same_encoder, text_encoder_to_record
from histoseek.encoders.registry import create_encoder
from histoseek.errors import LibraryError
from histoseek.index.backends import backend_spec, open_backend
from histoseek.index.describe import library_info, library_summary
from histoseek.index.library_folder import (
    DB_NAME,
    delete_empty_library,
    refuse_or_reset,
    write_new_library,
)
from histoseek.index.lock import write_lock
from histoseek.index.manifest import LibraryManifest
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.index.vectors import FaissIndex, IndexKind
from histoseek.ingest.results import Removed
from histoseek.search.classify import MIN_MARGIN, TOP_K, SlideClassification, SlideClassifier
from histoseek.search.hits import Hit
from histoseek.search.searcher import Searcher
from histoseek.slides.tiling import TilingConfig
from histoseek.viz.hit_pixels import hit_picture, hit_pixels

if TYPE_CHECKING:  # ingest (tqdm, threads, file discovery) loads on the first add, not on search
    from histoseek.index.health import Health
    from histoseek.index.migrate import Migrated
    from histoseek.ingest.results import IngestReport

__all__ = ["DB_NAME", "DEFAULT_ENCODER", "Library"]
DEFAULT_ENCODER = "histoseek-base"  # the built-in model: offline, both towers


class Library:
    """A persistent multimodal index of slides, tiles and reports."""

    def __init__(self, root: Path, store: RecordStore, device: str = "cpu",
                 encoder: Encoder | None = None, text_encoder: Encoder | None = None) -> None:
        self.root, self.store, self.device = root, store, device
        self.manifest = LibraryManifest.load(store, root)
        self.tiling = TilingConfig(**self.manifest.tiling)
        self._encoder: Encoder | None = None
        self._text_encoder: Encoder | None = None
        if encoder is not None:
            self._encoder = same_encoder(root, EncoderInfo.from_dict(self.manifest.encoder),
                                         encoder)
        if text_encoder is not None:
            self._adopt_text_encoder(text_encoder)
        self._summaries_checked: tuple[int, int] | None = None
        self._open_indexes()

    def _open_indexes(self) -> None:
        backend = open_backend(self.manifest.vector_store, self.root, self.manifest.index,
                               self.manifest.index_options,
                               lambda space, ids: self.store.tile_sources(ids))
        self.indexes = SpaceIndexes(backend, self.store, self._space_dim)
        self._searcher = Searcher(self.store, self.indexes, self.tiling, self.manifest.dim,
                                  lambda: self.encoder, lambda: self.text_encoder,
                                  self._summarise_missing)
        self._classifier = SlideClassifier(self.store, self.tiling, self.manifest.dim,
                                           self._searcher.image_text_tower)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, encoder: str | Encoder = DEFAULT_ENCODER,
               pretrained: str | None = None, text_encoder: str | Encoder = "minilm",
               index: IndexKind = "flat", tiling: TilingConfig | None = None,
               device: str = "cpu", vector_store: str | None = None) -> Library:
        """Make a new library folder for ``encoder`` (a registry name or an ``Encoder``).

        ``vector_store``: ``faiss`` (default, files in the folder), a Milvus Lite file
        (``PATH.db``) or a Milvus server URI (``http://host:19530``).
        """
        root = Path(path)
        if (root / DB_NAME).exists():  # before loading a model
            raise LibraryError(f"{root}: a library exists here already; open it instead")
        FaissIndex(1, index)  # validates the index kind before anything is written
        store_spec = backend_spec(vector_store)
        enc = encoder if isinstance(encoder, Encoder) else create_encoder(
            encoder, pretrained=pretrained, device=device)
        text = text_encoder if isinstance(text_encoder, Encoder) else None
        db = write_new_library(root, LibraryManifest(
            encoder={**enc.info.to_dict(), "pretrained": pretrained},
            tiling=asdict(tiling or TilingConfig()), index=index,
            text_encoder=text.info.name if text else str(text_encoder), vector_store=store_spec))
        return cls(root, RecordStore(db), device, encoder=enc, text_encoder=text)

    @classmethod
    def open(cls, path: str | Path, device: str = "cpu", encoder: Encoder | None = None,
             text_encoder: Encoder | None = None) -> Library:
        """Open a library; an ``encoder`` given here is checked against the stored one."""
        root = Path(path)
        if not (root / DB_NAME).is_file():
            raise LibraryError(f"{root}: no histoseek library here (missing {DB_NAME})")
        return cls(root, RecordStore(root / DB_NAME), device, encoder, text_encoder)

    @classmethod
    def open_or_create(cls, path: str | Path, encoder: str | Encoder | None = None,
                       pretrained: str | None = None, index: IndexKind | None = None,
                       tiling: dict[str, Any] | None = None, device: str = "cpu",
                       vector_store: str | None = None) -> Library:
        """Open ``path`` or create it (the CLI's ``index``); settings given must match.

        ``tiling`` holds only the ``TilingConfig`` fields the user set. An existing library
        with no records yet takes new settings instead of refusing them.
        """
        asked = {**(tiling or {}), "index": index, "pretrained": pretrained,
                 "encoder": encoder.info.name if isinstance(encoder, Encoder) else encoder,
                 "vector_store": None if vector_store is None else backend_spec(
                     vector_store).get("uri", "faiss")}
        root = Path(path)
        if (root / DB_NAME).is_file():
            lib = cls.open(root, device=device)
            if refuse_or_reset(root, lib.manifest, asked, lib.is_empty()):
                return lib
            lib.close()
            delete_empty_library(root)
        return cls.create(root, encoder=encoder or DEFAULT_ENCODER, pretrained=pretrained,
                          index=index or "flat", tiling=TilingConfig(**(tiling or {})),
                          device=device, vector_store=vector_store)

    def is_empty(self) -> bool:
        counts = self.store.counts()
        return counts["sources"] == 0 and counts["reports"] == 0

    def save(self) -> None:
        """Write changed FAISS indexes atomically (temp file, fsync, rename)."""
        self.indexes.save()

    def close(self) -> None:
        self.save()
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return library_summary(self.root, self.store, self.manifest)

    # -- encoders ----------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The image (and maybe text) encoder the library was built with, checked on load."""
        if self._encoder is None:
            self._encoder = load_stored_encoder(self.root, self.manifest.encoder, self.device)
        return self._encoder

    @property
    def text_encoder(self) -> Encoder:
        if self._text_encoder is None:
            self._adopt_text_encoder(create_encoder(self.manifest.text_encoder,
                                                    device=self.device))
        assert self._text_encoder is not None
        return self._text_encoder

    def _adopt_text_encoder(self, enc: Encoder) -> None:
        if first := text_encoder_to_record(self.root, self.manifest.text_encoder_info, enc):
            self.manifest = self.manifest.with_text_encoder_info(first)
            self.manifest.save(self.store)
        self._text_encoder = enc

    def _space_dim(self, space: VectorSpace) -> int:
        if space != "text":
            return self.manifest.dim
        info = self.manifest.text_encoder_info
        return int(info["dim"]) if info else self.text_encoder.dim

    def _summarise_missing(self) -> None:
        """Store slide summaries for sources indexed before they existed (once, on demand)."""
        if self._summaries_checked != self.store.data_version():
            self.store.summarise_missing(self.manifest.dim, write_lock(self.root))
            self._summaries_checked = self.store.data_version()

    # -- adding and removing -----------------------------------------------------------------
    def add(self, paths: list[str | Path] | str | Path, labels: str | Path | None = None,
            mpp: float | None = None, metadata: dict[str, Any] | None = None,
            batch_size: int = 64, progress: bool = True, ray: str | None = None
            ) -> IngestReport:
        """Index files and folders (``DIR/<class>/<file>`` gives labels). Re-adding is a no-op.

        ``labels`` is a CSV ``path,label[,source_id,slide_id,...]``; ``mpp`` overrides or
        supplies the scale. Bad files are skipped and listed in the report's ``failures``.
        ``ray``: a Ray cluster address whose workers read and encode (``ingest.ray_ingest``).
        """
        from histoseek.ingest.files import add_files

        paths = [paths] if isinstance(paths, str | Path) else list(paths)
        return add_files(paths, store=self.store, indexes=self.indexes, encoder=self.encoder,
                         tiling=self.tiling, lock=write_lock(self.root), labels=labels, mpp=mpp,
                         metadata=metadata, batch_size=batch_size, progress=progress,
                         ray=ray, pretrained=self.manifest.pretrained)

    def add_reports(self, source: str | Path | list[Any]) -> IngestReport:
        """Index report texts (CSV ``report_id,text[,source_id,label]``, .txt, or a list)."""
        from histoseek.ingest.reports import add_reports

        return add_reports(source, store=self.store, indexes=self.indexes,
                           text_encoder=lambda: self.text_encoder,
                           image_encoder=lambda: self.encoder, lock=write_lock(self.root))

    def remove(self, key: str | Path) -> Removed:
        """Delete a source (path, file name, sha256 or id) with its tiles, or a report by id."""
        from histoseek.ingest.removal import remove_records

        return remove_records(key, root=self.root, store=self.store, indexes=self.indexes,
                              lock=write_lock(self.root))

    def migrate(self, to: str, progress: bool = True) -> Migrated:
        """Move the vector indexes to ``to`` (``faiss``, ``PATH.db`` or a Milvus URI),
        rebuilt from SQLite; the old backend's files or collections are left as they were."""
        from histoseek.index.migrate import migrate_vectors

        with write_lock(self.root):
            self.save()
            self.manifest, done = migrate_vectors(self.root, self.store, self.manifest, to,
                                                  self._space_dim, progress)
        self._open_indexes()
        return done

    def check(self) -> Health:
        """Report damage: SQLite pages, vector checksums, index files and their agreement."""
        from histoseek.index.health import check_library

        return check_library(self.store, self.indexes)

    def repair(self) -> dict[str, int]:
        """Rebuild every vector index from the stored vectors (``index.health``)."""
        from histoseek.index.health import repair_library

        with write_lock(self.root):
            return repair_library(self.store, self.indexes)

    # -- searching and describing ----------------------------------------------------------
    @delegates_to(Searcher.search)
    def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        # the signature and docstring are Searcher.search's; forwarding only the arguments
        # given keeps this layer off the timing of a 0.5 ms HNSW search
        return self._searcher.search(*args, **kwargs)

    def classify(self, slide: str | Path, classes: str | Path | list[str] | None = None,
                 mpp: float | None = None, top_k: int = TOP_K, min_margin: float = MIN_MARGIN,
                 max_tiles: int = 2000, progress: bool = True) -> SlideClassification:
        """Zero-shot subtype of a slide from class descriptions (``search.classify``).

        ``classes``: a prompts YAML, comma-separated knowledge-tree entities, or a list of
        them (default: the colorectal EBHI set). A slide indexed in this library is
        classified from its stored tile vectors; any other is tiled and encoded now.
        """
        return self._classifier(slide, classes, mpp, top_k, min_margin, max_tiles, progress)

    def hit_picture(self, hit: Hit, px: int | None = None) -> np.ndarray:
        """A hit as a retrieval grid shows it (``viz.hit_pixels.hit_picture``)."""
        return hit_picture(hit, px or self.tiling.tile_px)

    def hit_pixels(self, hit: Hit, px: int | None = None) -> np.ndarray:
        """The pixels a hit points at, uint8 ``[px, px, 3]`` (``viz.hit_pixels``)."""
        return hit_pixels(hit, px or self.tiling.tile_px)

    def write_heatmaps(self, hits: list[Hit], folder: str | Path, title: str = "") -> list[Path]:
        """A heatmap PNG per slide in ``hits``, of the latest tile/region/slide search."""
        return self._searcher.write_heatmaps(hits, Path(folder), title)

    def sources(self) -> list[dict[str, Any]]:
        """Every indexed source with its label, ids, scale and tile count (``histoseek list``)."""
        return self.store.list_sources()

    def reports(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Indexed reports with their ids, text, label and metadata, oldest first."""
        return self.store.list_reports(limit, offset)

    def info(self) -> dict[str, Any]:
        """Counts and settings, as ``histoseek info`` prints them."""
        return library_info(self.root, self.store, self.manifest)
