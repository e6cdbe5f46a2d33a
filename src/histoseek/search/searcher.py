"""Running one query of any kind against a library's spaces, filters applied inside FAISS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.errors import EmptyQueryError, InputError
from histoseek.index.rescore import RESCORE_FACTOR, rescore
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.search.arguments import parse_region
from histoseek.search.hits import Hit, clip_score, report_hit, source_fields
from histoseek.search.queries import (
    ImageQuery,
    aggregate_slides,
    group_by_slide,
    query_tile,
    region_tiles,
    slide_tiles,
)
from histoseek.search.text_query import embed_text_query
from histoseek.slides.tiling import TilingConfig

Target = Literal["tiles", "slides", "reports"]
TARGETS: tuple[Target, ...] = get_args(Target)
Region = str | tuple[str | Path, int, int, int, int]


class Searcher:
    """Turns a query into vectors with the library's encoders and ranks one space."""

    def __init__(self, store: RecordStore, indexes: SpaceIndexes, tiling: TilingConfig,
                 image_dim: int, image_encoder: Callable[[], Encoder],
                 text_encoder: Callable[[], Encoder]) -> None:
        self.store, self.indexes, self.tiling, self.image_dim = store, indexes, tiling, image_dim
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self._sources: dict[int, dict[str, Any]] | None = None
        self._source_fields: dict[int, dict[str, Any]] = {}

    def search(self, image: ImageQuery | None = None, text: str | None = None,
               slide: str | Path | None = None, region: Region | None = None,
               vector: np.ndarray | None = None, k: int = 10,
               where: dict[str, Any] | None = None, exclude: dict[str, Any] | None = None,
               target: Target | None = None, mpp: float | None = None, group: bool = False,
               max_query_tiles: int = 64, expand: bool = True) -> list[Hit]:
        given = [name for name, v in (("image", image), ("text", text), ("slide", slide),
                                      ("region", region), ("vector", vector)) if v is not None]
        if len(given) != 1:
            raise InputError(
                f"give exactly one of image, text, slide, region, vector (got {given or 'none'})")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if target is not None and target not in TARGETS:
            raise InputError(f"target '{target}' is not one of {', '.join(TARGETS)}")
        kind = given[0]
        target = target or {"text": "reports", "slide": "slides"}.get(kind, "tiles")
        if group and target == "reports":
            raise InputError("group applies to tile hits (slides are grouped already), not "
                             "to reports")
        if kind == "text":
            if not str(text).strip():
                raise EmptyQueryError("the text query is empty: give some words to search for")
            if target == "reports":
                query = embed_text_query(self.text_encoder().encode_texts, str(text), expand)
                return self._ranked("text", query, k, where, exclude)[0]
            vectors = embed_text_query(self._image_text_tower().encode_texts, str(text), expand)
        elif kind == "vector":
            vectors = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            if vectors.shape[1] != self.image_dim:
                raise InputError(f"vector has {vectors.shape[1]} dims; this library's image "
                                 f"space has {self.image_dim}")
        elif kind == "slide":
            assert slide is not None
            _, tiles = slide_tiles(slide, self.tiling, mpp, max_query_tiles)
            vectors = self.image_encoder().encode_images(tiles)
        elif kind == "region":
            assert region is not None
            path, x, y, w, h = parse_region(region) if isinstance(region, str) else region
            vectors = self.image_encoder().encode_images(
                region_tiles(path, (x, y, w, h), self.tiling, mpp))
        else:
            assert image is not None
            vectors = self.image_encoder().encode_images(query_tile(image, self.tiling.tile_px))
        if target == "reports":
            self._image_text_tower()
            return self._ranked("joint", _mean(vectors), k, where, exclude)[0]
        if target == "slides":
            per_tile = self._ranked("image", vectors, max(4 * k, 32), where, exclude)
            return aggregate_slides(per_tile, k)
        if group:
            return self._grouped(_mean(vectors), k, where, exclude)
        return self._ranked("image", _mean(vectors), k, where, exclude)[0]

    def _image_text_tower(self) -> Encoder:
        encoder = self.image_encoder()
        if not encoder.has_texts:
            encoder.encode_texts(["probe"])  # raises NoTextTowerError, clearly worded
        return encoder

    def _grouped(self, query: np.ndarray, k: int, where: dict[str, Any] | None,
                 exclude: dict[str, Any] | None) -> list[Hit]:
        """``k`` sources with their best tiles: fetch more tiles until k sources appear."""
        total = len(self.indexes["image"])
        fetch = max(4 * k, 32)
        while True:
            groups = group_by_slide(self._ranked("image", query, fetch, where, exclude)[0])
            if len(groups) >= k or fetch >= total:
                return groups[:k]
            fetch *= 4

    def _ranked(self, space: VectorSpace, queries: np.ndarray, k: int,
                where: dict[str, Any] | None, exclude: dict[str, Any] | None
                ) -> list[list[Hit]]:
        """Top ``k`` hits of each query row in ``space``, filters applied inside FAISS."""
        index = self.indexes[space]
        allow = deny = None
        if where:
            allow = self.store.filtered_ids(space, where, exclude)
            if len(allow) == 0:
                return [[] for _ in queries]
        elif exclude:
            deny = np.setdiff1d(self.store.all_ids(space),
                                self.store.filtered_ids(space, None, exclude))
        if index.scores_are_estimates:
            _, candidates = index.search(queries, k * RESCORE_FACTOR, allow=allow, deny=deny)
            scores, ids = rescore(queries, candidates, lambda found: self.store.vectors_for(
                space, found, index.dim), min(k, candidates.shape[1]))
        else:
            scores, ids = index.search(queries, k, allow=allow, deny=deny)
        wanted = ids[ids >= 0]
        wanted = (wanted if len(queries) == 1 else np.unique(wanted)).tolist()
        if space != "image":
            rows = self.store.report_rows(wanted)
            return [[report_hit(s, rows[i])
                     for s, i in zip(srow.tolist(), irow.tolist(), strict=True) if i in rows]
                    for srow, irow in zip(scores, ids, strict=True)]
        places, sources = self.store.tile_places(wanted)
        if sources is not self._sources:  # the store reloaded its source rows
            self._sources, self._source_fields = sources, {
                pk: source_fields(row) for pk, row in sources.items()}
        fields = self._source_fields
        return [[Hit(clip_score(s), "tile", i, x=p[0], y=p[1], w=p[2], h=p[3], mpp=p[4],
                     **fields[p[5]])
                 for s, i in zip(srow.tolist(), irow.tolist(), strict=True)
                 if (p := places.get(i)) is not None]
                for srow, irow in zip(scores, ids, strict=True)]


def _mean(vectors: np.ndarray) -> np.ndarray:
    """One unit query from one or more rows (a single row skips numpy's reductions: this is
    on every search's path)."""
    row = vectors[0] if len(vectors) == 1 else vectors.mean(axis=0)
    norm = float(np.sqrt(row @ row))
    return (row / norm if norm > 0 else row).reshape(1, -1).astype(np.float32, copy=False)
