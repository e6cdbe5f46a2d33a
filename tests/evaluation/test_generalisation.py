"""Cross-domain proxies: neighbourhood overlap and class-restricted retrieval, hand-checked."""

from __future__ import annotations

import numpy as np
import pytest

from histoseek.evaluation.generalisation import (
    knn_indices,
    neighbourhood_overlap,
    random_crops,
    restricted_mmv,
)


def points_on_a_line(n: int) -> np.ndarray:
    """Unit vectors at increasing angles: each one's nearest neighbours are its index neighbours."""
    angles = np.linspace(0, np.pi / 2, n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_knn_excludes_self_and_finds_the_adjacent_points() -> None:
    top = knn_indices(points_on_a_line(6), 2)
    assert top.shape == (6, 2)
    assert all(i not in row for i, row in enumerate(top))
    assert set(top[2]) == {1, 3} and set(top[0]) == {1, 2}


def test_overlap_is_one_for_the_same_space_and_invariant_to_rotation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert np.allclose(neighbourhood_overlap(x, x, 5), 1.0)
    assert np.allclose(neighbourhood_overlap(x, x @ q.astype(np.float32), 5), 1.0)


def test_overlap_of_unrelated_spaces_is_near_chance() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    overlap = neighbourhood_overlap(a, b, 10).mean()
    assert overlap < 0.15  # chance: 10 / 199 = 0.05


def test_overlap_counts_shared_neighbours_exactly() -> None:
    line = points_on_a_line(5)  # neighbours of 0 (k=2): {1, 2}
    shuffled = line[[0, 3, 4, 1, 2]]  # now item 0's nearest are items 3 and 4 (old 1, 2)
    per_tile = neighbourhood_overlap(line, shuffled, 2)
    assert per_tile[0] == 0.0  # {1, 2} vs {3, 4}
    with pytest.raises(ValueError, match="reference vectors"):
        neighbourhood_overlap(line, line[:4], 2)


def test_restricted_mmv_scores_only_the_named_classes() -> None:
    # two tight clusters; 'b' queries find 'b' neighbours from other cases, 'c' finds 'a'
    emb = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0, 1.01], [0.01, 1], [1, 0.015]],
                   np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.array(["a", "a", "a", "b", "b", "b", "c"])
    groups = np.array(["p1", "p2", "p3", "p4", "p5", "p6", "p7"])
    out = restricted_mmv(emb, labels, groups, ["b", "c"], k=1)
    assert out["b"] == 1.0 and out["c"] == 0.0
    assert out["all"] == pytest.approx(3 / 4)


def test_random_crops_are_zoomed_in_and_reproducible() -> None:
    img = np.zeros((224, 224, 3), np.uint8)
    img[:, 112:] = 255
    crops = random_crops([img], 4, seed=3)
    assert crops.shape == (4, 224, 224, 3) and crops.dtype == np.uint8
    assert np.array_equal(crops, random_crops([img], 4, seed=3))
    assert not np.array_equal(crops, random_crops([img], 4, seed=4))
