"""Region → locations: windows on a slide's similarity map, and the library's region search on
synthetic slides whose region boxes are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.test_synthetic_slides import write_labels
from histoseek.evaluation.synthetic_slides import box_iou, make_synthetic_slides
from histoseek.library import Library
from histoseek.search.regions import SimilarityMap, best_windows, template_window_scores

SIDE = 224


def grid_boxes(rows: int, cols: int) -> np.ndarray:
    return np.array([(c * SIDE + 10, r * SIDE + 20, SIDE, SIDE)
                     for r in range(rows) for c in range(cols)])


def test_best_window_finds_the_hot_block() -> None:
    boxes = grid_boxes(6, 6)
    scores = np.full(36, 0.1, np.float32)
    hot = [r * 6 + c for r in (3, 4) for c in (1, 2, 3)]  # rows 3-4, cols 1-3
    scores[hot] = 0.9
    windows = best_windows(SimilarityMap.build(boxes, scores), (2, 3), top=2)
    assert windows[0].box == (1 * SIDE + 10, 3 * SIDE + 20, 3 * SIDE, 2 * SIDE)
    assert windows[0].score == pytest.approx(0.9)
    assert sorted(windows[0].tiles) == hot
    assert not set(windows[1].tiles) & set(hot)  # the second window does not overlap the first


def layout_slide() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 5x5 slide of two tissues in stripes, everywhere alike by the mean; the query is the
    2x2 block at rows 1-2, cols 2-3, whose own layout is (a b / b a)."""
    rng = np.random.default_rng(0)
    a, b = np.eye(8, dtype=np.float32)[:2]
    vectors = np.stack([a if (r + c) % 2 == 0 else b for r in range(5) for c in range(5)])
    vectors += 0.01 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors[1 * 5 + 2] += 0.2 * np.eye(8, dtype=np.float32)[2]  # the query block's own marks
    vectors[2 * 5 + 3] += 0.2 * np.eye(8, dtype=np.float32)[3]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[[1 * 5 + 2, 1 * 5 + 3, 2 * 5 + 2, 2 * 5 + 3]]  # row-major
    return grid_boxes(5, 5), vectors, query


def test_template_scores_peak_where_the_query_layout_is() -> None:
    boxes, vectors, query = layout_slide()
    similarity = SimilarityMap.build(boxes, vectors @ query.mean(axis=0))
    layout = template_window_scores(similarity, vectors @ query.T, (2, 2))
    assert layout.shape == (4, 4)
    assert np.unravel_index(np.nanargmax(layout), layout.shape) == (1, 2)
    assert np.nanmax(layout) == pytest.approx(1.0, abs=1e-5)
    # a window shifted by one tile has the stripes the other way round: a poor layout match
    assert layout[1, 1] < 0.2 and layout[1, 3] < 0.2


def test_layout_decides_between_windows_the_mean_cannot_tell_apart() -> None:
    boxes, vectors, query = layout_slide()
    similarity = SimilarityMap.build(boxes, vectors @ query.mean(axis=0))
    layout = template_window_scores(similarity, vectors @ query.T, (2, 2))
    with_layout = best_windows(similarity, (2, 2), top=1, layout=layout)[0]
    assert with_layout.box == (2 * SIDE + 10, 1 * SIDE + 20, 2 * SIDE, 2 * SIDE)
    plain = best_windows(similarity, (2, 2), top=3)
    assert max(w.score for w in plain) - min(w.score for w in plain) < 0.05  # near ties
    ignored = best_windows(similarity, (2, 2), top=1, layout=layout, layout_weight=0.0)[0]
    assert ignored.score == pytest.approx(plain[0].score)


def test_windows_need_tissue_under_half_their_cells() -> None:
    boxes = grid_boxes(4, 4)
    keep = [0, 5, 10, 15]  # a diagonal: any 2x2 window has at most 2 of 4 cells
    scores = np.linspace(0.2, 0.8, 4).astype(np.float32)
    strict = best_windows(SimilarityMap.build(boxes[keep], scores), (2, 2), top=5,
                          min_cover=0.75)
    assert strict == []


def test_avoid_leaves_out_the_query_box() -> None:
    boxes = grid_boxes(4, 4)
    scores = np.zeros(16, np.float32)
    scores[0] = 1.0
    avoid = (10, 20, SIDE, SIDE)
    found = best_windows(SimilarityMap.build(boxes, scores), (1, 1), top=3, avoid=avoid)
    assert all(box_iou(w.box, avoid) == 0 for w in found)


@pytest.fixture(scope="module")
def synthetic_library(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("region-search")
    labels = write_labels(root / "tiles")
    slides = make_synthetic_slides(labels, root / "slides", 2, seed=3, compression="zlib")
    with Library.create(root / "lib", encoder="classic") as lib:
        lib.add([s.path for s in slides])
    return root / "lib", slides


def test_a_region_finds_its_own_location_first(synthetic_library) -> None:  # type: ignore[no-untyped-def]
    lib_path, slides = synthetic_library
    with Library.open(lib_path) as lib:
        for region in slides[0].regions:
            hits = lib.search(region=(slides[0].path, *region.box), level="region", k=3,
                              include_query_region=True)
            assert hits[0].kind == "region" and Path(hits[0].path) == slides[0].path
            top = (hits[0].x, hits[0].y, hits[0].w, hits[0].h)
            assert box_iou(top, region.box) >= 0.5, (region, top)


def test_region_hits_leave_out_the_query_box_and_find_its_class(synthetic_library) -> None:  # type: ignore[no-untyped-def]
    lib_path, slides = synthetic_library
    boxes_of = {s.path: {r.label: [] for r in s.regions} for s in slides}
    for s in slides:
        for r in s.regions:
            boxes_of[s.path][r.label].append(r.box)
    with Library.open(lib_path) as lib:
        region = slides[0].regions[0]
        hits = lib.search(region=(slides[0].path, *region.box), level="region", k=3)
        for hit in hits:
            box = (hit.x, hit.y, hit.w, hit.h)
            if Path(hit.path) == slides[0].path:
                assert box_iou(box, region.box) < 0.5
        top = hits[0]
        same_class = boxes_of[Path(top.path)].get(region.label, [])
        assert any(box_iou((top.x, top.y, top.w, top.h), b) > 0 for b in same_class)


def test_heatmaps_are_written_per_hit_slide(synthetic_library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lib_path, slides = synthetic_library
    with Library.open(lib_path) as lib:
        region = slides[0].regions[0]
        hits = lib.search(region=(slides[0].path, *region.box), level="region", k=4)
        written = lib.write_heatmaps(hits, tmp_path / "maps")
    assert written and all(p.exists() and p.stat().st_size > 10_000 for p in written)
    assert len(written) == len({h.path for h in hits})
