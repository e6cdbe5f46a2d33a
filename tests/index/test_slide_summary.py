"""Slide summaries (mean, Yottixel mosaic, region bag) and how the record store keeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histoseek.index.slide_summary import (
    MOSAIC_FRACTION,
    MOSAIC_MAX,
    SUMMARY_KINDS,
    SlideSummary,
    summarise_slide,
)
from histoseek.index.store import RecordStore, SourceRecord

DIM = 32
SIDE = 224


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def grid(rows: int, cols: int, x0: int = 0, y0: int = 0) -> np.ndarray:
    """Level-0 boxes of a ``rows x cols`` block of tiles whose corner is cell (x0, y0)."""
    return np.array([((x0 + c) * SIDE, (y0 + r) * SIDE, SIDE, SIDE)
                     for r in range(rows) for c in range(cols)], np.int64)


def planted(side: int = 15, noise: float = 0.05, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four tissue types, one per quadrant of a ``2 side x 2 side`` slide (a one-cell gap
    between quadrants): tile ids (not 0..n-1), boxes, vectors and each tile's true type."""
    rng = np.random.default_rng(seed)
    types = unit(rng.standard_normal((4, DIM)))
    boxes, vectors, truth = [], [], []
    for t, (qx, qy) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        b = grid(side, side, qx * (side + 1), qy * (side + 1))
        boxes.append(b)
        vectors.append(unit(types[t] + noise * rng.standard_normal((len(b), DIM))))
        truth.append(np.full(len(b), t))
    n = 4 * side * side
    ids = 1000 + 7 * np.arange(n, dtype=np.int64)
    return ids, np.concatenate(boxes), np.concatenate(vectors), np.concatenate(truth)


def quadrant_of(boxes: np.ndarray, side: int) -> np.ndarray:
    """Quadrant number (0..3, as in ``planted``) of each box's top-left corner."""
    qx = boxes[:, 0] // SIDE >= side + 1
    qy = boxes[:, 1] // SIDE >= side + 1
    return (qx.astype(int) + 2 * qy.astype(int))


def contains(outer: np.ndarray, inner: np.ndarray) -> bool:
    return bool(outer[0] <= inner[0] and outer[1] <= inner[1]
                and inner[0] + inner[2] <= outer[0] + outer[2]
                and inner[1] + inner[3] <= outer[1] + outer[3])


@pytest.fixture(scope="module")
def planted_summary() -> tuple[tuple[np.ndarray, ...], dict[str, SlideSummary]]:
    data = planted()
    return data, summarise_slide(*data[:3])


def test_kinds_shapes_and_dtypes(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, *_), summaries = planted_summary
    assert set(summaries) == set(SUMMARY_KINDS) == {"mean", "mosaic", "bag"}
    for kind, s in summaries.items():
        m = len(s)
        assert s.kind == kind and m >= 1
        assert s.tile_ids.shape == (m,) and s.tile_ids.dtype == np.int64
        assert s.boxes.shape == (m, 4) and s.boxes.dtype == np.int64
        assert s.weights.shape == (m,) and s.weights.dtype == np.float32
        assert s.vectors.shape == (m, DIM) and s.vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(s.vectors, axis=1), 1.0, atol=1e-5)
        assert set(s.tile_ids.tolist()) <= set(ids.tolist())
        assert s.nbytes == m * (8 + 32 + 4 + 4 * DIM)
    assert len(summaries["mean"]) == 1


def test_mosaic_is_a_subset_of_the_input_tiles(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, boxes, vectors, _), summaries = planted_summary
    mosaic = summaries["mosaic"]
    row_of = {int(t): i for i, t in enumerate(ids)}
    rows = np.array([row_of[int(t)] for t in mosaic.tile_ids])
    assert len(set(rows.tolist())) == len(rows)  # no tile twice
    assert np.array_equal(mosaic.boxes, boxes[rows])
    assert np.allclose(mosaic.vectors, vectors[rows])


def test_mosaic_covers_every_tissue_type_and_quadrant(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, _, _, truth), summaries = planted_summary
    mosaic = summaries["mosaic"]
    type_of = dict(zip(ids.tolist(), truth.tolist(), strict=True))
    picked = np.array([type_of[int(t)] for t in mosaic.tile_ids])
    counts = np.bincount(picked, minlength=4)
    assert np.all(counts >= 1), counts
    assert np.all(counts >= 0.5 * counts.mean()), counts  # no type starved by another
    assert set(quadrant_of(mosaic.boxes, 15).tolist()) == {0, 1, 2, 3}


def test_mosaic_tiles_spread_within_a_type(planted_summary) -> None:  # type: ignore[no-untyped-def]
    """Spatial k-means inside each feature cluster: a type's picks are not bunched up."""
    (ids, _, _, truth), summaries = planted_summary
    mosaic = summaries["mosaic"]
    type_of = dict(zip(ids.tolist(), truth.tolist(), strict=True))
    picked = np.array([type_of[int(t)] for t in mosaic.tile_ids])
    for t in range(4):
        corners = mosaic.boxes[picked == t, :2] / SIDE
        if len(corners) < 3:
            continue
        spread = np.ptp(corners, axis=0)  # cells, over a 15 x 15 quadrant
        assert spread.max() >= 5, (t, corners)


def test_mosaic_size_is_about_the_fraction(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, *_), summaries = planted_summary
    expected = MOSAIC_FRACTION * len(ids)  # 45 of 900
    assert 0.5 * expected <= len(summaries["mosaic"]) <= min(MOSAIC_MAX, 1.5 * expected + 9)


def test_mosaic_never_exceeds_its_bound() -> None:
    ids, boxes, vectors, _ = planted(side=30, seed=2)  # 3600 tiles: 5% would be 180
    mosaic = summarise_slide(ids, boxes, vectors)["mosaic"]
    assert MOSAIC_MAX // 2 <= len(mosaic) <= MOSAIC_MAX
    assert mosaic.weights.sum() == len(ids)


def test_weights_count_every_tile_once(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, *_), summaries = planted_summary
    for kind in ("mean", "mosaic", "bag"):
        assert summaries[kind].weights.sum() == pytest.approx(len(ids)), kind
        assert np.all(summaries[kind].weights >= 1), kind


def test_bag_boxes_hold_their_representative_tile(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, boxes, *_), summaries = planted_summary
    bag = summaries["bag"]
    row_of = {int(t): i for i, t in enumerate(ids)}
    assert 20 <= len(bag) <= 32  # about sqrt(900) = 30 regions
    for tile, box, weight in zip(bag.tile_ids, bag.boxes, bag.weights, strict=True):
        tile_box = boxes[row_of[int(tile)]]
        assert contains(box, tile_box), (box, tile_box)
        cells = (box[2] // SIDE) * (box[3] // SIDE)
        assert cells >= weight  # a box holds at least the tiles it stands for


def test_bag_regions_keep_to_one_tissue_type(planted_summary) -> None:  # type: ignore[no-untyped-def]
    """Feature and position agree here: no region should straddle two quadrants."""
    _, summaries = planted_summary
    bag = summaries["bag"]
    corners = bag.boxes[:, :2]
    far = bag.boxes[:, :2] + bag.boxes[:, 2:] - 1
    assert np.array_equal(quadrant_of(corners, 15), quadrant_of(far, 15))


def test_bag_regions_are_spatially_coherent_when_features_are_uniform() -> None:
    rng = np.random.default_rng(3)
    boxes = grid(20, 20)
    vectors = unit(np.ones((len(boxes), DIM)) + 1e-3 * rng.standard_normal((len(boxes), DIM)))
    bag = summarise_slide(np.arange(len(boxes)), boxes, vectors)["bag"]
    assert len(bag) == 20  # sqrt(400)
    area = (bag.boxes[:, 2] * bag.boxes[:, 3]).astype(float)
    slide_area = float(20 * SIDE * 20 * SIDE)
    # compact regions tile the slide about once; regions mixing far-apart tiles would each
    # span most of it (20 regions x whole slide)
    assert area.sum() <= 2.0 * slide_area
    assert area.max() <= 0.25 * slide_area
    # and each region's box is mostly its own tiles
    assert np.all(bag.weights * SIDE * SIDE >= 0.4 * area)


def test_mean_is_the_unit_mean_of_the_tiles(planted_summary) -> None:  # type: ignore[no-untyped-def]
    (ids, boxes, vectors, _), summaries = planted_summary
    mean = summaries["mean"]
    expected = vectors.mean(axis=0)
    expected /= np.linalg.norm(expected)
    assert np.linalg.norm(mean.vectors[0]) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(mean.vectors[0], expected, atol=1e-5)
    assert mean.tile_ids[0] == ids[np.argmax(vectors @ expected)]
    x1 = (boxes[:, 0] + boxes[:, 2]).max()
    y1 = (boxes[:, 1] + boxes[:, 3]).max()
    assert mean.boxes[0].tolist() == [0, 0, int(x1), int(y1)]
    assert mean.weights.tolist() == [len(ids)]


def test_same_input_same_summaries(planted_summary) -> None:  # type: ignore[no-untyped-def]
    data, first = planted_summary
    again = summarise_slide(*(a.copy() for a in data[:3]))
    for kind in SUMMARY_KINDS:
        for field in ("tile_ids", "boxes", "weights", "vectors"):
            assert np.array_equal(getattr(first[kind], field), getattr(again[kind], field)), (
                kind, field)


def test_a_single_tile() -> None:
    vector = unit(np.random.default_rng(4).standard_normal((1, DIM)))
    box = np.array([[448, 224, SIDE, SIDE]])
    summaries = summarise_slide(np.array([42]), box, vector)
    assert set(summaries) == set(SUMMARY_KINDS)
    for kind, s in summaries.items():
        assert s.tile_ids.tolist() == [42], kind
        assert s.boxes.tolist() == box.tolist(), kind
        assert s.weights.tolist() == [1.0], kind
        assert np.allclose(s.vectors, vector, atol=1e-6), kind


def test_a_few_tiles() -> None:
    """Fewer tiles than mosaic clusters: every tile is its own cluster."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((5, DIM)))
    summaries = summarise_slide(np.arange(10, 15), grid(1, 5), vectors)
    assert summaries["mosaic"].tile_ids.tolist() == [10, 11, 12, 13, 14]
    for kind in SUMMARY_KINDS:
        assert summaries[kind].weights.sum() == 5


def test_no_tiles_no_summaries() -> None:
    empty = summarise_slide(np.zeros(0, np.int64), np.zeros((0, 4), np.int64),
                            np.zeros((0, DIM), np.float32))
    assert empty == {}


# -- the record store ------------------------------------------------------------------------

def record(sha: str, rows: int, cols: int, seed: int = 0) -> SourceRecord:
    rng = np.random.default_rng(seed)
    boxes = grid(rows, cols)
    n = len(boxes)
    return SourceRecord(
        path=f"/data/{sha}.tif", name=f"{sha}.tif", sha256=sha, kind="slide",
        width=cols * SIDE, height=max(rows, 1) * SIDE, mpp=0.5, mpp_source="file", label=None,
        source_id=None, metadata={}, boxes_l0=boxes.reshape(-1, 4), tile_mpp=0.5,
        tissue=np.ones(n, np.float32),
        vectors=unit(rng.standard_normal((n, DIM))) if n else np.zeros((0, DIM), np.float32))


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    s = RecordStore(tmp_path / "library.sqlite")
    yield s
    s.close()


def _rows(store: RecordStore, source: int | None = None) -> int:
    if source is None:
        return store.conn.execute("SELECT count(*) FROM slide_summaries").fetchone()[0]
    return store.conn.execute("SELECT count(*) FROM slide_summaries WHERE source = ?",
                              (source,)).fetchone()[0]


def test_inserted_sources_get_stored_summaries(store: RecordStore) -> None:
    rec = record("a", 6, 8, seed=1)
    (ids,) = store.insert_sources([rec])
    expected = summarise_slide(ids, rec.boxes_l0, rec.vectors)
    for kind in SUMMARY_KINDS:
        stored = store.summaries(kind, DIM)
        assert list(stored) == [1]
        got = stored[1]
        assert got.kind == kind
        for field in ("tile_ids", "boxes", "weights", "vectors"):
            assert np.array_equal(getattr(got, field), getattr(expected[kind], field)), (
                kind, field)
    assert store.sources_without_summaries() == []


def test_summaries_of_chosen_sources(store: RecordStore) -> None:
    store.insert_sources([record(f"s{i}", 3, 4, seed=i) for i in range(4)])
    assert sorted(store.summaries("mosaic", DIM, [2, 4])) == [2, 4]
    assert store.summaries("mosaic", DIM, []) == {}
    assert sorted(store.summaries("mean", DIM)) == [1, 2, 3, 4]


def test_a_source_without_tiles_has_no_summaries(store: RecordStore) -> None:
    store.insert_sources([record("empty", 0, 0), record("full", 2, 2)])
    assert _rows(store, 1) == 0 and _rows(store, 2) == 3
    assert store.sources_without_summaries() == []  # nothing to summarise, nothing missing
    assert sorted(store.summaries("mean", DIM)) == [2]


def test_write_summaries_backfills_what_is_missing(store: RecordStore) -> None:
    store.insert_sources([record(f"s{i}", 5, 5, seed=i) for i in range(3)])
    before = {kind: store.summaries(kind, DIM) for kind in SUMMARY_KINDS}
    with store.transaction() as conn:
        conn.execute("DELETE FROM slide_summaries WHERE source IN (1, 3)")
    assert store.sources_without_summaries() == [1, 3]
    store.write_summaries(store.sources_without_summaries(), DIM)
    assert store.sources_without_summaries() == []
    for kind in SUMMARY_KINDS:
        after = store.summaries(kind, DIM)
        for source in (1, 2, 3):
            assert np.array_equal(after[source].vectors, before[kind][source].vectors)
            assert np.array_equal(after[source].tile_ids, before[kind][source].tile_ids)


def test_summaries_go_with_their_source(store: RecordStore) -> None:
    store.insert_sources([record("a", 3, 3), record("b", 4, 4, seed=1)])
    assert _rows(store) == 6
    store.delete_sources([1])
    assert _rows(store, 1) == 0 and _rows(store, 2) == 3
    assert list(store.summaries("bag", DIM)) == [2]


def test_summary_bytes_counts_every_row(store: RecordStore) -> None:
    assert store.summary_bytes() == {}
    store.insert_sources([record("a", 6, 6), record("b", 3, 7, seed=1)])
    counted = store.summary_bytes()
    assert set(counted) == set(SUMMARY_KINDS)
    per_row = 8 + 4 * 8 + 4 + 4 * DIM  # id, box, weight, vector
    assert counted["mean"] == 2 * per_row
    for kind in SUMMARY_KINDS:
        stored = store.summaries(kind, DIM)
        assert counted[kind] == sum(len(s) for s in stored.values()) * per_row
        assert counted[kind] == sum(s.nbytes for s in stored.values())
    store.delete_sources([1])
    assert store.summary_bytes()["mean"] == per_row
