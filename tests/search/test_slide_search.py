"""Slide → slides in two stages over stored summaries, text → slides by top-K pooling, and the
``--slide`` CLI, on a small library of synthetic pyramidal slides with a fast fake encoder."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.test_synthetic_slides import COLOURS, write_labels
from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess, check_texts, check_tiles
from histoseek.errors import InputError
from histoseek.evaluation.synthetic_slides import SyntheticSlide, make_synthetic_slides
from histoseek.index.slide_summary import SlideSummary
from histoseek.index.store import RecordStore, SourceRecord
from histoseek.library import Library
from histoseek.search.hits import Hit
from histoseek.search.queries import pool_top_k
from histoseek.search.slide_search import SlideCatalogue, rerank

BINS = 4  # colour histogram bins per channel
THUMB = 4  # grey thumbnail side


class FakeHist(Encoder):
    """Fast two-tower stand-in: an image is its Hellinger colour histogram (64 bins) beside a
    mean-centred 4 x 4 grey thumbnail (so textured background tiles differ from one another,
    flat class tiles do not); a text is the histogram of the class colours it names."""

    info = EncoderInfo("fake-hist", "1", BINS**3 + THUMB**2, ("image", "text"), Preprocess())

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        tiles = check_tiles(tiles)
        n, h, w, _ = tiles.shape
        q = tiles.astype(np.int64) * BINS // 256
        codes = (q[..., 0] * BINS * BINS + q[..., 1] * BINS + q[..., 2]).reshape(n, -1)
        counts = np.bincount((codes + BINS**3 * np.arange(n)[:, None]).ravel(),
                             minlength=n * BINS**3).reshape(n, BINS**3)
        hist = np.sqrt(counts / counts.sum(axis=1, keepdims=True))
        grey = tiles.mean(axis=3)[:, : h // THUMB * THUMB, : w // THUMB * THUMB]
        thumb = grey.reshape(n, THUMB, h // THUMB, THUMB, w // THUMB).mean(axis=(2, 4))
        thumb = (thumb - thumb.mean(axis=(1, 2), keepdims=True)).reshape(n, -1) / 20.0
        vectors = np.hstack([hist, thumb])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in check_texts(texts):
            row = np.zeros(self.dim)
            for word in text.lower().split():
                if word in COLOURS:
                    r, g, b = (v * BINS // 256 for v in COLOURS[word])
                    row[r * BINS * BINS + g * BINS + b] += 1.0
            rows.append(row / np.linalg.norm(row) if row.any() else np.full(
                self.dim, self.dim**-0.5))
        return np.asarray(rows, np.float32)


# -- a small library of synthetic slides -------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticSlide]]:
    """Four slides (seed 3): 0, 1 and 3 hold a polyp region, 2 none; 0-1 site A, 2-3 site B."""
    root = tmp_path_factory.mktemp("slide-search")
    labels = write_labels(root / "tiles")
    slides = make_synthetic_slides(labels, root / "slides", 4, seed=3, compression="zlib")
    polyp = [any(r.label == "polyp" for r in s.regions) for s in slides]
    assert polyp == [True, True, False, True], "the synthetic slides changed; update the tests"
    with Library.create(root / "lib", encoder=FakeHist()) as lib:
        lib.add([s.path for s in slides[:2]], metadata={"site": "A"}, progress=False)
        lib.add([s.path for s in slides[2:]], metadata={"site": "B"}, progress=False)
    return root / "lib", slides


@pytest.fixture
def lib(built: tuple[Path, list[SyntheticSlide]]) -> Library:
    library = Library.open(built[0], encoder=FakeHist())
    yield library
    library.close()


@pytest.fixture
def lib_copy(built: tuple[Path, list[SyntheticSlide]], tmp_path: Path) -> Path:
    """A copy of the library folder, for tests that change it."""
    return Path(shutil.copytree(built[0], tmp_path / "lib"))


def paths(hits: list[Hit]) -> list[Path]:
    return [Path(h.path) for h in hits]


def sizes(library: Library) -> dict[Path, tuple[int, int]]:
    return {Path(s["path"]): (s["width"], s["height"]) for s in library.sources()}


def inside(box: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    x, y, w, h = box
    return x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= size[0] and y + h <= size[1]


def test_the_query_slide_is_left_out_by_default(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    for slide in slides:
        hits = lib.search(slide=slide.path, k=10)
        assert sorted(paths(hits)) == sorted(s.path for s in slides if s is not slide)
        assert all(h.kind == "slide" for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_the_query_slide_comes_first_when_included(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    for codes in ("float", "binary"):
        for slide in slides:
            hits = lib.search(slide=slide.path, k=4, include_query_region=True,
                              slide_codes=codes)
            assert paths(hits)[0] == slide.path, codes
            assert hits[0].regions[0].score == pytest.approx(1.0, abs=1e-5)  # itself
            assert hits[0].score > hits[1].score + 0.01  # the others are clearly less alike


def test_level_slide_is_the_same_two_stage_search(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    query = built[1][1].path
    by_level = lib.search(slide=query, level="slide", k=3)
    by_target = lib.search(slide=query, target="slides", k=3)
    assert [(h.path, h.score) for h in by_level] == [(h.path, h.score) for h in by_target]


def test_hits_carry_region_pairs_inside_both_slides(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    query = built[1][0].path
    size_of = sizes(lib)
    hits = lib.search(slide=query, k=3)
    assert hits
    for hit in hits:
        assert 1 <= len(hit.regions) <= 5
        assert hit.id == hit.regions[0].id and hit.mpp == hit.regions[0].mpp
        # pairs come in order of how much they set the hit apart, not of raw cosine
        assert len({r.id for r in hit.regions}) == len(hit.regions)  # each hit tile once
        for region in hit.regions:
            assert region.kind == "tile" and region.path == hit.path
            assert region.mpp == pytest.approx(0.5)
            assert inside((region.x, region.y, region.w, region.h), size_of[Path(hit.path)])
            assert region.query_box is not None and len(region.query_box) == 4
            assert inside(region.query_box, size_of[query])


def test_region_pairs_match_the_stored_tile_vectors(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    """Each pair's score is the cosine of the query tile at ``query_box`` and the hit tile."""
    query = built[1][2].path
    own = lib.store.source_by_path(query)
    ids, boxes = lib.store.source_tiles(own)
    at_box = {tuple(int(v) for v in b): int(i) for i, b in zip(ids, boxes, strict=True)}
    dim = lib.manifest.dim
    for hit in lib.search(slide=query, k=3):
        for region in hit.regions:
            query_tile = at_box[region.query_box]
            a, b = lib.store.vectors_for("image", np.array([query_tile, region.id]), dim)
            assert float(a @ b) == pytest.approx(region.score, abs=1e-5)
            assert lib.store.tile_sources([region.id])[0] == lib.store.source_by_path(hit.path)


def test_an_unindexed_copy_finds_its_original(lib: Library, built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original = built[1][3].path
    copy = Path(shutil.copy(original, tmp_path / "copy.tif"))
    for codes in ("float", "binary"):
        # every tile of the copy: its summaries are those of the original, tile for tile
        hits = lib.search(slide=copy, k=4, max_query_tiles=1000, slide_codes=codes)
        assert paths(hits)[0] == original, codes
        assert hits[0].regions[0].score == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 4  # nothing is left out: the copy is not in the library
        top = hits[0].regions[0]
        assert top.query_box == (top.x, top.y, top.w, top.h)  # same place in the same pixels
    few = lib.search(slide=copy, k=4)  # 64 query tiles by default
    assert paths(few)[0] == original


def test_binary_and_float_codes_agree_on_the_ranking_here(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    for slide in built[1]:
        as_float = lib.search(slide=slide.path, k=3)
        as_binary = lib.search(slide=slide.path, k=3, slide_codes="binary")
        assert paths(as_float)[0] == paths(as_binary)[0]
        # the re-rank is exact either way: same candidates, same scores
        assert [h.score for h in as_float] == pytest.approx([h.score for h in as_binary])


def test_where_and_exclude_filter_slide_hits(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    query = slides[0].path
    assert sorted(paths(lib.search(slide=query, where={"site": "B"}))) == sorted(
        [slides[2].path, slides[3].path])
    assert paths(lib.search(slide=query, exclude={"site": "B"})) == [slides[1].path]
    assert paths(lib.search(slide=query, exclude={"site": "B"}, include_query_region=True)
                 )[0] == query
    assert paths(lib.search(slide=query, where={"site": "A"}, exclude={"name": slides[1].path.name},
                            slide_codes="binary")) == []
    named = lib.search(slide=query, where={"slide": [slides[3].path.name]})
    assert paths(named) == [slides[3].path]


@pytest.mark.parametrize("option", ["where", "exclude"])
def test_an_unknown_filter_key_is_refused(lib: Library, built, option: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="unknown filter key 'sight'"):
        lib.search(slide=built[1][0].path, **{option: {"sight": "A"}})


def test_bad_slide_codes_are_refused(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="slide_codes 'hamming'"):
        lib.search(slide=built[1][0].path, slide_codes="hamming")  # type: ignore[arg-type]


def test_exhaustive_search_still_ranks_slides(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    query = slides[1].path
    hits = lib.search(slide=query, k=4, exhaustive=True, include_query_region=True)
    assert sorted(paths(hits)) == sorted(s.path for s in slides)
    assert paths(hits)[0] == query and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(h.kind == "slide" and h.regions for h in hits)
    size_of = sizes(lib)
    for hit in hits:
        for region in hit.regions:
            assert inside((region.x, region.y, region.w, region.h), size_of[Path(hit.path)])


def test_exhaustive_search_also_leaves_out_the_query_slide(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    query = slides[1].path
    hits = lib.search(slide=query, k=4, exhaustive=True)
    assert query not in paths(hits)
    assert sorted(paths(hits)) == sorted(s.path for s in slides if s is not slides[1])


def test_text_finds_slides_by_pooled_tile_scores(lib: Library, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    polyp_tiles = {s.path: sum(r.box[2] * r.box[3] // 224**2 for r in s.regions
                               if r.label == "polyp") for s in slides}
    hits = lib.search(text="polyp", target="slides", k=4, expand=False)
    assert len(hits) == 4 and all(h.kind == "slide" for h in hits)
    ranked = paths(hits)
    # slides with 5 or more polyp tiles, then the one with 4, then the one with none
    assert {polyp_tiles[p] for p in ranked[:2]} == {6}
    assert polyp_tiles[ranked[2]] == 4 and polyp_tiles[ranked[3]] == 0
    assert hits[1].score > hits[2].score > hits[3].score
    for hit in hits:
        assert len(hit.regions) <= 5 and all(Path(r.path) == Path(hit.path) for r in hit.regions)
        assert hit.score <= hit.regions[0].score + 1e-6  # the mean of its top tiles


# -- the library keeps its summaries -----------------------------------------------------------

def test_a_library_from_before_the_summaries_is_backfilled(lib_copy: Path, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    with Library.open(lib_copy, encoder=FakeHist()) as library:
        before = {kind: library.store.summaries(kind, library.manifest.dim)
                  for kind in ("mean", "mosaic", "bag")}
    conn = sqlite3.connect(lib_copy / "library.sqlite")
    with conn:  # as if built before migration 002: no table, no record of it
        conn.execute("DROP TABLE slide_summaries")
        conn.execute("DELETE FROM _migrations WHERE name = '002_slide_summaries'")
    conn.close()
    with Library.open(lib_copy, encoder=FakeHist()) as library:
        store = library.store
        assert len(store.sources_without_summaries()) == 4  # the table is back, empty
        assert store.summary_bytes() == {}
        hits = library.search(slide=slides[0].path, k=3)
        assert len(hits) == 3 and slides[0].path not in paths(hits)
        assert store.sources_without_summaries() == []
        for kind, old in before.items():
            new = store.summaries(kind, library.manifest.dim)
            assert sorted(new) == sorted(old)
            for source in old:
                assert np.array_equal(new[source].tile_ids, old[source].tile_ids)
                assert np.array_equal(new[source].vectors, old[source].vectors)
        assert library.info()["slide_summary_bytes"] == store.summary_bytes()


def test_an_unindexed_query_also_backfills(lib_copy: Path, built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with (Library.open(lib_copy, encoder=FakeHist()) as library,
          library.store.transaction() as conn):
        conn.execute("DELETE FROM slide_summaries")
    with Library.open(lib_copy, encoder=FakeHist()) as library:
        copy = shutil.copy(built[1][2].path, tmp_path / "q.tif")
        hits = library.search(slide=copy, k=4)
        assert len(hits) == 4
        assert library.store.sources_without_summaries() == []


def test_removing_a_slide_removes_its_summaries(lib_copy: Path, built) -> None:  # type: ignore[no-untyped-def]
    slides = built[1]
    with Library.open(lib_copy, encoder=FakeHist()) as library:
        store = library.store
        gone = store.source_by_path(slides[3].path)
        assert slides[3].path in paths(library.search(slide=slides[0].path))
        mean_bytes = store.summary_bytes()["mean"]
        library.remove(slides[3].path)
        left = store.conn.execute("SELECT count(*) FROM slide_summaries WHERE source = ?",
                                  (gone,)).fetchone()[0]
        assert left == 0
        assert gone not in store.summaries("mosaic", library.manifest.dim)
        assert store.summary_bytes()["mean"] == mean_bytes * 3 // 4
        # the cached coarse indexes notice the change
        assert slides[3].path not in paths(library.search(slide=slides[0].path))
        assert slides[3].path not in paths(library.search(slide=slides[0].path,
                                                          slide_codes="binary"))
        library.add(slides[3].path, progress=False)
        assert slides[3].path in paths(library.search(slide=slides[0].path))


# -- the coarse stage and the re-rank on their own ---------------------------------------------

DIM = 64


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def tissue_types(seed: int = 0) -> np.ndarray:
    """Unit directions A, B, C with cos(B, C) about 0.3 and A orthogonal to both."""
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, 3)))[0].T
    a, b, c = basis
    return np.stack([a, b, unit((0.3 * b + np.sqrt(1 - 0.09) * c)[None])[0]]).astype(np.float32)


def slide_record(name: str, kinds: list[int], types: np.ndarray, seed: int,
                 dim: int = DIM) -> SourceRecord:
    """A slide whose tiles (a row of cells) are of the given tissue types, with noise."""
    rng = np.random.default_rng(seed)
    n = len(kinds)
    boxes = np.stack([np.arange(n) * 224, np.zeros(n), np.full(n, 224), np.full(n, 224)],
                     axis=1).astype(np.int64)
    vectors = unit(types[kinds] + 0.03 * rng.standard_normal((n, dim)))
    return SourceRecord(
        path=f"/data/{name}.tif", name=f"{name}.tif", sha256=name, kind="slide",
        width=n * 224, height=224, mpp=0.5, mpp_source="file", label=None, source_id=None,
        metadata={}, boxes_l0=boxes, tile_mpp=0.5, tissue=np.ones(n, np.float32),
        vectors=vectors)


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    """Source 1: 95 tiles of A, 5 of C. Source 2: 100 of B. Sources 3-6: A only."""
    types = tissue_types()
    s = RecordStore(tmp_path / "library.sqlite")
    s.insert_sources([slide_record("mostly-a", [0] * 95 + [2] * 5, types, 1),
                      slide_record("all-b", [1] * 100, types, 2)]
                     + [slide_record(f"a{i}", [0] * 40, types, 10 + i) for i in range(4)])
    yield s
    s.close()


@pytest.mark.parametrize("codes", ["float", "binary"])
def test_candidates_come_from_slide_vectors_and_mosaic_votes(store: RecordStore,
                                                             codes: str) -> None:
    """A query of pure C: its mean is nearest slide 2's (B, cos 0.3), but only slide 1's
    mosaic holds C tiles, so the votes bring slide 1 in."""
    catalogue = SlideCatalogue(store, DIM, codes)  # type: ignore[arg-type]
    assert len(catalogue) == 6 and catalogue.codes == codes
    query = unit(tissue_types()[[2] * 8] + 0.03 * np.random.default_rng(5).standard_normal(
        (8, DIM)))
    mean = unit(query.mean(axis=0, keepdims=True))
    assert catalogue.candidates(mean, query, 1, None).tolist() == [2, 1]
    found = catalogue.candidates(mean, query, 3, None).tolist()
    assert found[0] == 2 and 1 in found
    assert len(found) == len(set(found)) <= 6


@pytest.mark.parametrize("codes", ["float", "binary"])
def test_candidates_keep_to_the_allowed_sources(store: RecordStore, codes: str) -> None:
    catalogue = SlideCatalogue(store, DIM, codes)  # type: ignore[arg-type]
    query = unit(tissue_types()[[2, 2, 0]])
    mean = unit(query.mean(axis=0, keepdims=True))
    found = catalogue.candidates(mean, query, 10, np.array([3, 5]))
    assert sorted(found.tolist()) == [3, 5]
    assert catalogue.candidates(mean, query, 10, np.zeros(0, np.int64)).tolist() == []


def test_an_empty_catalogue_has_no_candidates(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "empty.sqlite")
    for codes in ("float", "binary"):
        catalogue = SlideCatalogue(store, DIM, codes)  # type: ignore[arg-type]
        assert len(catalogue) == 0
        found = catalogue.candidates(unit(np.ones((1, DIM))), unit(np.ones((2, DIM))), 5, None)
        assert found.tolist() == []
    store.close()


def test_binary_codes_take_less_memory(store: RecordStore) -> None:
    as_float = SlideCatalogue(store, DIM, "float")
    as_binary = SlideCatalogue(store, DIM, "binary")
    rows = as_float.mosaic_index.ntotal
    assert rows == as_binary.mosaic_index.ntotal > 0
    assert as_float.bytes_in_memory - as_binary.bytes_in_memory == rows * (4 * DIM - DIM // 8)


def test_binary_codes_work_for_any_dimension(tmp_path: Path) -> None:
    dim = 106  # the classic encoder's dimension
    types = np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32)
    store = RecordStore(tmp_path / "odd.sqlite")
    store.insert_sources([slide_record(f"s{i}", [i] * 20, types, i, dim=dim) for i in range(3)])
    catalogue = SlideCatalogue(store, dim, "binary")
    query = unit(types[[1, 1]])
    assert catalogue.candidates(query[:1], query, 1, None).tolist()[0] == 2
    store.close()


def summary(vectors: np.ndarray, first_id: int = 0) -> SlideSummary:
    n = len(vectors)
    return SlideSummary("mosaic", np.arange(first_id, first_id + n),
                        np.tile(np.array([0, 0, 224, 224]), (n, 1)),
                        np.ones(n, np.float32), unit(vectors))


def test_rerank_scores_the_centred_median_of_best_matches() -> None:
    e = np.eye(8, dtype=np.float32)
    query = summary(e[[0, 1, 2]])
    close = summary(np.stack([e[0], e[1], e[5]]), first_id=10)  # matches 2 of 3 query rows
    one = summary(np.stack([e[2], e[6], e[7]]), first_id=20)  # matches 1 of 3
    tilted = summary(np.stack([e[0] + e[3], e[1] + e[3], e[2] + e[3]]), first_id=30)
    ranked = rerank(query, {1: one, 2: close, 3: tilted})
    assert [c.source for c in ranked] == [2, 3, 1]
    by_source = {c.source: c for c in ranked}
    # every query row's mean best match over the candidates; the score adds it back once
    typical = (1 + np.sqrt(0.5)) / 3
    assert by_source[3].score == pytest.approx(np.sqrt(0.5))  # every row at 0.71
    assert by_source[2].score == pytest.approx(1.0)  # median of (1, 1, 0) - typical + typical
    assert by_source[1].score == pytest.approx(0.0)  # median of (0, 0, 1) - typical + typical
    assert typical > 0
    # pairs: query row, candidate row, similarity; best first, each candidate row once
    assert by_source[2].pairs[:2] == ((0, 0, pytest.approx(1.0)), (1, 1, pytest.approx(1.0)))
    assert by_source[1].pairs[0] == (2, 0, pytest.approx(1.0))


def test_rerank_uses_each_candidate_row_once_and_at_most_five_pairs() -> None:
    rng = np.random.default_rng(0)
    query = summary(rng.standard_normal((12, 16)))
    single = summary(rng.standard_normal((1, 16)))
    many = summary(rng.standard_normal((30, 16)))
    ranked = {c.source: c for c in rerank(query, {1: single, 2: many})}
    assert len(ranked[1].pairs) == 1
    assert len(ranked[2].pairs) == 5
    assert len({j for _, j, _ in ranked[2].pairs}) == 5
    # ordered by the match minus that query row's mean best match over the candidates
    best = {src: (query.vectors @ cand.vectors.T).max(axis=1)
            for src, cand in ((1, single), (2, many))}
    typical = (best[1] + best[2]) / 2
    centred = [best[2][qi] - typical[qi] for qi, _, _ in ranked[2].pairs]
    assert centred == sorted(centred, reverse=True)
    assert [s for qi, _, s in ranked[2].pairs] == pytest.approx(
        [best[2][qi] for qi, _, _ in ranked[2].pairs])
    assert rerank(query, {}) == []


# -- text → slides: MI-Zero top-K pooling ------------------------------------------------------

def tile_hit(path: str, score: float, tile_id: int, kind: str = "slide") -> Hit:
    return Hit(score, "tile", tile_id, path=path, slide=Path(path).name, x=0, y=0, w=224,
               h=224, mpp=0.5, source_kind=kind)  # type: ignore[arg-type]


def test_pooling_prefers_several_good_tiles_to_one_best() -> None:
    tiles = ([tile_hit("/one.tif", 0.95, 1)]
             + [tile_hit("/many.tif", s, 10 + i) for i, s in enumerate([0.9, 0.88, 0.87, 0.86,
                                                                          0.85, 0.5])]
             + [tile_hit("/low.tif", 0.2, 30), tile_hit("/low.tif", 0.1, 31)])
    slides = pool_top_k(tiles, k=5)
    assert [h.path for h in slides] == ["/many.tif", "/one.tif", "/low.tif"]
    assert slides[0].score == pytest.approx(np.mean([0.9, 0.88, 0.87, 0.86, 0.85]))
    # a slide with fewer than 5 tiles counts the weakest retrieved score (0.1) for the rest
    assert slides[1].score == pytest.approx((0.95 + 4 * 0.1) / 5)
    assert slides[2].score == pytest.approx((0.2 + 4 * 0.1) / 5)
    assert slides[0].kind == "slide" and slides[0].id == 10
    assert [r.score for r in slides[0].regions] == [0.9, 0.88, 0.87, 0.86, 0.85]
    assert [r.id for r in slides[1].regions] == [1]


def test_pooling_top_and_k_and_kinds() -> None:
    tiles = [tile_hit("/a.png", 0.8, 1, kind="image"), tile_hit("/b.tif", 0.7, 2),
             tile_hit("/b.tif", 0.6, 3), tile_hit("/c.tif", 0.3, 4)]
    top1 = pool_top_k(tiles, k=2, top=1)  # top-1 pooling is max pooling
    assert [(h.path, h.kind) for h in top1] == [("/a.png", "image"), ("/b.tif", "slide")]
    assert [h.score for h in top1] == pytest.approx([0.8, 0.7])
    top2 = pool_top_k(tiles, k=3, top=2)
    assert [h.path for h in top2] == ["/b.tif", "/a.png", "/c.tif"]
    assert top2[1].score == pytest.approx((0.8 + 0.3) / 2)
    assert pool_top_k([], k=3) == []


# -- the CLI -----------------------------------------------------------------------------------

@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Library`` builds the stored encoder by name: hand it the fake one."""
    import histoseek.encoders.registry

    real = histoseek.encoders.registry.create_encoder
    monkeypatch.setattr(histoseek.encoders.registry, "create_encoder", lambda name, *a, **kw: (
        FakeHist() if name == "fake-hist" else real(name, *a, **kw)))


def test_cli_slide_search_with_binary_codes_prints_query_boxes(  # type: ignore[no-untyped-def]
        built, fake_registry: None) -> None:
    from histoseek.cli import app

    lib_path, slides = built
    result = CliRunner().invoke(app, ["search", str(lib_path), "--slide", str(slides[1].path),
                                      "--slide-codes", "binary", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(hits) == 2
    assert str(slides[1].path) not in [h["path"] for h in hits]
    for hit in hits:
        assert hit["kind"] == "slide" and "query_box" in hit and hit["regions"]
        for region in hit["regions"]:
            box = region["query_box"]
            assert isinstance(box, list) and len(box) == 4 and box[2] > 0 and box[3] > 0
    exhaustive = CliRunner().invoke(app, ["search", str(lib_path), "--slide",
                                          str(slides[1].path), "--exhaustive", "-k", "2",
                                          "--json"])
    assert exhaustive.exit_code == 0, exhaustive.output
    assert len([line for line in exhaustive.stdout.splitlines() if line.strip()]) == 2


def test_cli_refuses_unknown_slide_codes(built, fake_registry: None) -> None:  # type: ignore[no-untyped-def]
    from histoseek.cli import app

    lib_path, slides = built
    result = CliRunner().invoke(app, ["search", str(lib_path), "--slide", str(slides[0].path),
                                      "--slide-codes", "bits"])
    assert result.exit_code == 2
    assert "slide_codes 'bits'" in result.output and "Traceback" not in result.output
