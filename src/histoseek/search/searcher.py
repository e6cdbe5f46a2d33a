"""Running one query of any kind against a library's spaces, filters applied inside FAISS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import faiss
import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.errors import EmptyQueryError, InputError
from histoseek.index.rescore import RESCORE_FACTOR, rescore
from histoseek.index.slide_summary import SlideSummary, summarise_slide
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.search.arguments import parse_region
from histoseek.search.hits import Hit, clip_score, report_hit, source_fields
from histoseek.search.queries import (
    ImageQuery,
    aggregate_slides,
    group_by_slide,
    pool_top_k,
    query_tile,
    region_tiles,
    slide_tiles,
)
from histoseek.search.regions import SimilarityMap, best_windows, template_window_scores
from histoseek.search.slide_search import MIN_CANDIDATES, SlideCatalogue, SlideCodes, rerank
from histoseek.search.text_query import IMAGE_EXPANSION_WEIGHT, embed_text_query
from histoseek.slides.tiling import TilingConfig

Target = Literal["tiles", "slides", "reports"]
TARGETS: tuple[Target, ...] = get_args(Target)
Level = Literal["tile", "region", "slide"]
LEVELS: tuple[Level, ...] = get_args(Level)
Region = str | tuple[str | Path, int, int, int, int]
LAYOUT_WEIGHT = 0.5  # region windows: share of the tile-layout match (search.regions)


class Searcher:
    """Turns a query into vectors with the library's encoders and ranks one space."""

    def __init__(self, store: RecordStore, indexes: SpaceIndexes, tiling: TilingConfig,
                 image_dim: int, image_encoder: Callable[[], Encoder],
                 text_encoder: Callable[[], Encoder],
                 summarise_missing: Callable[[], None] = lambda: None) -> None:
        self.store, self.indexes, self.tiling, self.image_dim = store, indexes, tiling, image_dim
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.summarise_missing = summarise_missing
        self.layout_weight = LAYOUT_WEIGHT
        self._catalogues: dict[SlideCodes, tuple[Any, SlideCatalogue]] = {}
        self._sources: dict[int, dict[str, Any]] | None = None
        self._source_fields: dict[int, dict[str, Any]] = {}
        self._hit_fields: dict[int, tuple[Any, ...]] = {}
        #: the image-space query vector of the latest tile, region or slide search (for
        #: heatmaps: ``Library.write_heatmaps``); None after a report search
        self.last_image_query: np.ndarray | None = None

    def search(self, image: ImageQuery | None = None, text: str | None = None,
               slide: str | Path | None = None, region: Region | None = None,
               vector: np.ndarray | None = None, k: int = 10,
               where: dict[str, Any] | None = None, exclude: dict[str, Any] | None = None,
               target: Target | None = None, mpp: float | None = None, group: bool = False,
               max_query_tiles: int = 64, expand: bool = True, level: Level | None = None,
               include_query_region: bool = False, exhaustive: bool = False,
               slide_codes: SlideCodes = "float") -> list[Hit]:
        """Run one query of any type; exactly one of image/text/slide/region/vector.

        ``target`` picks what comes back: ``tiles`` (default for images and regions),
        ``slides`` (default for slide queries), ``reports`` (default for text). ``where``
        and ``exclude`` filter on label, source_id, path, slide, kind or metadata keys; an
        unknown key is an error. ``vector`` is an embedding in the library's image space.
        ``expand`` spells out abbreviations in a text query and, for reports, fuses in the
        sentences of the knowledge-base entities it names (``search.text_query``).
        ``level='region'``: tile hits merged into boxes (``search.regions``), without a
        region query's own box unless ``include_query_region``. A slide query for slides
        runs in two stages over stored slide summaries (``search.slide_search``;
        ``slide_codes='binary'`` for the compact coarse index), leaving out the query slide
        itself unless ``include_query_region``; ``exhaustive`` scores every tile instead
        (slower; for comparison). Text for slides pools each slide's top tiles.
        """
        given = [name for name, v in (("image", image), ("text", text), ("slide", slide),
                                      ("region", region), ("vector", vector)) if v is not None]
        if len(given) != 1:
            raise InputError(
                f"give exactly one of image, text, slide, region, vector (got {given or 'none'})")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if slide_codes not in ("float", "binary"):
            raise InputError(f"slide_codes '{slide_codes}' is not one of float, binary")
        if target is not None and target not in TARGETS:
            raise InputError(f"target '{target}' is not one of {', '.join(TARGETS)}")
        kind = given[0]
        self.last_image_query = None
        if level is not None and level not in LEVELS:
            raise InputError(f"level '{level}' is not one of {', '.join(LEVELS)}")
        if level is not None and target == "reports":
            raise InputError("level applies to tile and slide hits, not to reports")
        if level == "slide":
            target = "slides"
        elif level is not None:
            if target == "slides":
                raise InputError(f"level '{level}' asks for {level}s, target 'slides' for slides: "
                                 "give one of them")
            target = "tiles"
        target = target or {"text": "reports", "slide": "slides"}.get(kind, "tiles")
        if group and level is not None:
            raise InputError("give group or level, not both (level 'region' already groups "
                             "neighbouring tiles)")
        if group and target == "reports":
            raise InputError("group applies to tile hits (slides are grouped already), not "
                             "to reports")
        if kind == "text":
            if not str(text).strip():
                raise EmptyQueryError("the text query is empty: give some words to search for")
            if target == "reports":
                query = embed_text_query(self.text_encoder().encode_texts, str(text), expand)
                return self._ranked("text", query, k, where, exclude)[0]
            vectors = embed_text_query(self.image_text_tower().encode_texts, str(text), expand,
                                       weight=IMAGE_EXPANSION_WEIGHT)
        elif kind == "vector":
            vectors = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            if vectors.shape[1] != self.image_dim:
                raise InputError(f"vector has {vectors.shape[1]} dims; this library's image "
                                 f"space has {self.image_dim}")
        elif kind == "slide":
            assert slide is not None
            if target == "slides" and not exhaustive:
                return self._slides_two_stage(slide, mpp, k, where, exclude, max_query_tiles,
                                              include_query_region, slide_codes)
            own = self.store.source_by_path(slide)
            if target == "slides" and own is not None and not include_query_region:
                paths = (exclude or {}).get("path", [])
                paths = [paths] if isinstance(paths, str) else list(paths)
                exclude = {**(exclude or {}), "path": [*paths, str(Path(slide).resolve())]}
            _, tiles = slide_tiles(slide, self.tiling, mpp, max_query_tiles)
            vectors = self.image_encoder().encode_images(tiles)
        elif kind == "region":
            assert region is not None
            path, x, y, w, h = parse_region(region) if isinstance(region, str) else region
            pixels, region_grid = region_tiles(path, (x, y, w, h), self.tiling, mpp)
            vectors = self.image_encoder().encode_images(pixels)
        else:
            assert image is not None
            vectors = self.image_encoder().encode_images(query_tile(image, self.tiling.tile_px))
        if target == "reports":
            self.image_text_tower()
            return self._ranked("joint", _mean(vectors), k, where, exclude)[0]
        query = self.last_image_query = _mean(vectors)
        if target == "slides" and kind == "text":  # MI-Zero: a slide's top tiles speak for it
            tiles = self._ranked("image", query, max(64 * k, 512), where, exclude)[0]
            return pool_top_k(tiles, k)
        if target == "slides":
            per_tile = self._ranked("image", vectors, max(4 * k, 32), where, exclude)
            return aggregate_slides(per_tile, k)
        if group:
            return self._grouped(query, k, where, exclude)
        if level == "region":
            shape, own = (2, 2), None  # a tile or text query: regions of 2 x 2 tiles
            if kind == "region":
                shape = region_grid
                own = None if include_query_region else (path, (x, y, w, h))
            return self._regions(query, k, where, exclude, shape, own,
                                 vectors if kind == "region" else None)
        return self._ranked("image", query, k, where, exclude)[0]

    def _regions(self, query: np.ndarray, k: int, where: dict[str, Any] | None,
                 exclude: dict[str, Any] | None, shape: tuple[int, int],
                 own: tuple[str | Path, tuple[int, int, int, int]] | None,
                 query_tiles: np.ndarray | None = None) -> list[Hit]:
        """Two stages: the sources of the best tile hits, then in each the best windows of
        ``shape`` tiles on its similarity map (``search.regions``), mixed with the match of
        the query's tile layout when the query is a region of tiles."""
        tiles = self._ranked("image", query, max(8 * k, 64), where, exclude)[0]
        sources = self.store.tile_sources([t.id for t in tiles])
        candidates = list(dict.fromkeys(int(s) for s in sources if s >= 0))[: max(2 * k, 10)]
        mpp_of = {t.path: t.mpp for t in tiles}
        own_path = str(Path(own[0]).resolve()) if own else None
        found = []
        for source in candidates:
            ids, boxes, vectors = self._tile_vectors(source)
            if len(ids) == 0:
                continue
            scores = vectors @ query.reshape(-1)
            similarity = SimilarityMap.build(boxes, scores)
            layout = None
            if query_tiles is not None and self.layout_weight > 0 and len(query_tiles) > 1:
                layout = template_window_scores(similarity, vectors @ query_tiles.T, shape)
            fields = self._source_fields[source]
            avoid = own[1] if own and str(Path(fields["path"]).resolve()) == own_path else None
            mpp = mpp_of.get(fields["path"])
            for window in best_windows(similarity, shape, k, avoid=avoid, layout=layout,
                                       layout_weight=self.layout_weight):
                members = sorted(
                    (Hit(clip_score(float(scores[i])), "tile", int(ids[i]), x=int(boxes[i, 0]),
                         y=int(boxes[i, 1]), w=int(boxes[i, 2]), h=int(boxes[i, 3]), mpp=mpp,
                         **fields) for i in window.tiles), key=lambda h: -h.score)
                x, y, w, h = window.box
                found.append(Hit(clip_score(window.score), "region", members[0].id, x=x, y=y,
                                 w=w, h=h, mpp=mpp, regions=tuple(members), **fields))
        found.sort(key=lambda h: -h.score)
        return found[:k]

    def _slides_two_stage(self, slide: str | Path, mpp: float | None, k: int,
                          where: dict[str, Any] | None, exclude: dict[str, Any] | None,
                          max_query_tiles: int, include_self: bool, codes: SlideCodes
                          ) -> list[Hit]:
        """Slide → slides by stored summaries (``search.slide_search``): coarse, re-rank."""
        query, own = self._query_summary(slide, mpp, max_query_tiles)
        self.last_image_query = query["mean"].vectors
        catalogue = self.catalogue(codes)
        allowed = (self.store.filtered_sources(where, exclude) if where or exclude
                   else None)
        if own is not None and not include_self:
            allowed = np.setdiff1d(catalogue.sources if allowed is None else allowed, [own])
        found = catalogue.candidates(query["mean"].vectors, query["mosaic"].vectors,
                                     max(4 * k, MIN_CANDIDATES), allowed)
        mosaics = self.store.summaries("mosaic", self.image_dim, found.tolist())
        ranked = rerank(query["mosaic"], mosaics)[:k]
        tile_ids = [mosaics[c.source].tile_ids[j] for c in ranked for _, j, _ in c.pairs]
        places, sources = self.store.tile_places(tile_ids)
        hits = []
        for cand in ranked:
            fields = source_fields(sources[cand.source])
            regions = []
            for qi, j, sim in cand.pairs:
                x, y, w, h, tile_mpp, _ = places[int(mosaics[cand.source].tile_ids[j])]
                regions.append(Hit(clip_score(sim), "tile", int(mosaics[cand.source].tile_ids[j]),
                                   x=x, y=y, w=w, h=h, mpp=tile_mpp, **fields,
                                   query_box=tuple(int(v) for v in query["mosaic"].boxes[qi])))
            top = regions[0]
            hits.append(Hit(clip_score(cand.score),
                            "image" if fields["source_kind"] == "image" else "slide", top.id,
                            mpp=top.mpp, regions=tuple(regions), **fields))
        return hits

    def _query_summary(self, slide: str | Path, mpp: float | None, max_query_tiles: int
                       ) -> tuple[dict[str, SlideSummary], int | None]:
        """The query slide's summaries: stored ones if it is indexed (and its source id),
        else from up to ``max_query_tiles`` of its tiles, encoded now."""
        own = self.store.source_by_path(slide)  # an indexed file that has moved still works
        if own is not None:
            self.summarise_missing()
            stored = {kind: self.store.summaries(kind, self.image_dim, [own]).get(own)
                      for kind in ("mean", "mosaic")}
            if all(v is not None for v in stored.values()):
                return {k: v for k, v in stored.items() if v is not None}, own
        boxes, tiles = slide_tiles(slide, self.tiling, mpp, max_query_tiles)
        vectors = self.image_encoder().encode_images(tiles)
        return summarise_slide(np.arange(len(boxes)), boxes, vectors), own

    def catalogue(self, codes: SlideCodes = "float") -> SlideCatalogue:
        """The coarse slide indexes, rebuilt when the library changed."""
        self.summarise_missing()
        version = self.store.data_version()
        cached = self._catalogues.get(codes)
        if cached is None or cached[0] != version:
            cached = self._catalogues[codes] = (
                version, SlideCatalogue(self.store, self.image_dim, codes))
        return cached[1]

    def similarity_map(self, query: np.ndarray, source: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 boxes ``[n, 4]`` of every tile of ``source`` and their scores vs ``query``."""
        _, boxes, scores = self._tile_scores(query, source)
        return boxes, scores

    def _tile_scores(self, query: np.ndarray, source: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids, level-0 boxes and query scores of every tile of ``source``."""
        ids, boxes, vectors = self._tile_vectors(source)
        return ids, boxes, vectors @ query.reshape(-1)

    def _tile_vectors(self, source: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids, level-0 boxes and stored vectors of every tile of ``source``."""
        ids, boxes = self.store.source_tiles(source)
        return ids, boxes, self.store.vectors_for("image", ids, self.image_dim)

    def write_heatmaps(self, hits: list[Hit], folder: Path, title: str = "") -> list[Path]:
        """One PNG per slide in ``hits``: its tiles' similarity to the latest image-space query
        and the hits' boxes (``viz.slide_heatmaps``)."""
        from histoseek.viz.slide_heatmaps import write_hit_heatmaps

        query = self.last_image_query
        if query is None:
            raise InputError("heatmaps show tile similarity: run a tile, region or slide search "
                             "first (not a report search)")
        return write_hit_heatmaps(hits, folder, lambda hit: self.similarity_map(
            query, int(self.store.tile_sources([hit.id])[0])), title)

    def image_text_tower(self) -> Encoder:
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
        selection: dict[str, np.ndarray] = {}
        if not (where or exclude):
            pass  # the common case first: one test on every search's path
        elif index.filters_by_group and space == "image":
            # Milvus: the filter becomes an expression on the tiles' source ids
            selection["allow_groups"] = self.store.filtered_sources(where, exclude)
        elif where:
            selection["allow"] = self.store.filtered_ids(space, where, exclude)
        else:
            selection["deny"] = np.setdiff1d(self.store.all_ids(space),
                                             self.store.filtered_ids(space, None, exclude))
        if selection and any(len(v) == 0 for n, v in selection.items() if n != "deny"):
            return [[] for _ in queries]
        if index.scores_are_estimates:
            _, candidates = index.search(queries, k * RESCORE_FACTOR, **selection)
            scores, ids = rescore(queries, candidates, lambda found: self.store.vectors_for(
                space, found, index.dim), min(k, candidates.shape[1]))
        else:
            scores, ids = index.search(queries, k, **selection)
        wanted = ids[ids >= 0]
        wanted = (wanted if len(queries) == 1 else np.unique(wanted)).tolist()
        if space != "image":
            rows = self.store.report_rows(wanted)
            slide_paths = self.store.slide_paths(
                {str(r["metadata"]["slide_id"]) for r in rows.values()
                 if r["metadata"].get("slide_id") is not None})
            return [[report_hit(s, rows[i], slide_paths)
                     for s, i in zip(srow.tolist(), irow.tolist(), strict=True) if i in rows]
                    for srow, irow in zip(scores, ids, strict=True)]
        # indexes[space] above has just read the store's data_version: no second read
        places, sources = self.store.tile_places(wanted, recheck=False)
        if sources is not self._sources:  # the store reloaded its source rows
            self._sources, self._source_fields = sources, {
                pk: source_fields(row) for pk, row in sources.items()}
            self._hit_fields = {pk: tuple(f.values()) for pk, f in self._source_fields.items()}
        fields = self._hit_fields
        # positional Hit arguments (see hits.SOURCE_FIELDS): half the cost of keywords
        return [[Hit(clip_score(s), "tile", i, f[0], f[1], f[2], p[0], p[1], p[2], p[3], p[4],
                     f[3], None, None, f[4], f[5])
                 for s, i in zip(srow.tolist(), irow.tolist(), strict=True)
                 if (p := places.get(i)) is not None and (f := fields[p[5]])]
                for srow, irow in zip(scores, ids, strict=True)]


def _mean(vectors: np.ndarray) -> np.ndarray:
    """One unit query from one or more rows (FAISS normalises in one call: this is on every
    search's path, where numpy's several calls cost twice as much on a cold cache)."""
    row = np.array(vectors[:1] if len(vectors) == 1 else vectors.mean(axis=0, keepdims=True),
                   dtype=np.float32)
    faiss.normalize_L2(row)
    return row
