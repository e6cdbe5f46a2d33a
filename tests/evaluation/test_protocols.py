"""Protocols: exact ranking against a naive loop, source splits, class prompts, zero-shot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histoseek.encoders.base import l2_normalise
from histoseek.errors import InputError
from histoseek.evaluation.datasets import Dataset
from histoseek.evaluation.protocols import (
    Split,
    load_class_prompts,
    neighbour_labels,
    rank_neighbours,
    split_by_source,
    zero_shot_predict,
)

# ---------------------------------------------------------------- rank_neighbours


def naive_rank(emb: np.ndarray, labels: np.ndarray, k: int,
               groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One query at a time, plain Python: allowed items sorted by descending cosine."""
    n = len(emb)
    k = min(k, n - 1)
    indices = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), -np.inf, np.float32)
    n_relevant = np.zeros(n, np.int64)
    for q in range(n):
        allowed = [j for j in range(n)
                   if j != q and (groups is None or groups[j] != groups[q])]
        n_relevant[q] = sum(labels[j] == labels[q] for j in allowed)
        sims = {j: float(np.dot(emb[q].astype(np.float64), emb[j].astype(np.float64)))
                for j in allowed}
        best = sorted(allowed, key=lambda j: -sims[j])[:k]
        indices[q, : len(best)] = best
        scores[q, : len(best)] = [sims[j] for j in best]
    return indices, scores, n_relevant


def seeded(n: int = 40, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = l2_normalise(rng.normal(size=(n, dim)))
    labels = np.array([f"class{c}" for c in rng.integers(0, 4, n)])
    groups = np.array([f"patient{g}" for g in rng.integers(0, 9, n)])
    return emb, labels, groups


@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_rank_neighbours_matches_naive_loop(use_groups: bool, k: int) -> None:
    emb, labels, groups = seeded()
    g = groups if use_groups else None
    ranking = rank_neighbours(emb, labels, k, g)
    want_idx, want_scores, want_rel = naive_rank(emb, labels, k, g)
    np.testing.assert_array_equal(ranking.indices, want_idx)
    np.testing.assert_allclose(ranking.scores, want_scores, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ranking.n_eligible_relevant, want_rel)


def test_groups_exclude_self_and_own_group() -> None:
    emb, labels, groups = seeded(n=60, seed=3)
    ranking = rank_neighbours(emb, labels, 20, groups)
    checked = 0
    for q, row in enumerate(ranking.indices):
        for j in row[row >= 0]:
            assert j != q
            assert groups[j] != groups[q], f"query {q} got neighbour {j} of its own group"
            checked += 1
    assert checked > 0
    # Without groups the same data does have same-group neighbours: the exclusion is real.
    plain = rank_neighbours(emb, labels, 20)
    assert any(groups[j] == groups[q] for q, row in enumerate(plain.indices) for j in row)
    assert all(q not in row for q, row in enumerate(plain.indices))


def test_n_eligible_relevant_by_hand() -> None:
    #          0    1    2    3    4    5
    labels = np.array(["a", "a", "a", "b", "b", "a"])
    groups = np.array(["p", "p", "q", "q", "r", "r"])
    emb = l2_normalise(np.random.default_rng(1).normal(size=(6, 4)))
    # Item 0 ("a", p): other a's are 1 (p, excluded), 2 (q), 5 (r) -> 2.
    # Item 1: same as item 0 -> 2.  Item 2 ("a", q): 0, 1, 5 -> 3.
    # Item 3 ("b", q): 4 (r) -> 1.  Item 4 ("b", r): 3 (q) -> 1.
    # Item 5 ("a", r): 0, 1, 2 -> 3.
    ranking = rank_neighbours(emb, labels, 3, groups)
    np.testing.assert_array_equal(ranking.n_eligible_relevant, [2, 2, 3, 1, 1, 3])
    # Without groups only the query itself is excluded: a's see 3 others, b's see 1.
    np.testing.assert_array_equal(rank_neighbours(emb, labels, 3).n_eligible_relevant,
                                  [3, 3, 3, 1, 1, 3])


def test_padding_when_fewer_eligible_items_than_k() -> None:
    labels = np.array(["a", "a", "b", "b"])
    groups = np.array(["x", "x", "x", "y"])
    emb = l2_normalise(np.array([[1, 0], [0.9, 0.1], [0.5, 0.5], [0, 1]], np.float32))
    ranking = rank_neighbours(emb, labels, 3, groups)
    assert ranking.indices.shape == (4, 3)
    # Items 0-2 share group x: each may only see item 3, then padding.
    for q in range(3):
        np.testing.assert_array_equal(ranking.indices[q], [3, -1, -1])
        assert np.isfinite(ranking.scores[q, 0])
        assert np.all(np.isneginf(ranking.scores[q, 1:]))
    # Item 3 sees all three, most similar first.
    np.testing.assert_array_equal(ranking.indices[3], [2, 1, 0])
    assert neighbour_labels(ranking, labels) == [["b"], ["b"], ["b"], ["b", "a", "a"]]


def test_k_is_capped_and_too_few_items_raise() -> None:
    emb = l2_normalise(np.eye(3, dtype=np.float32))
    assert rank_neighbours(emb, np.array(["a", "b", "c"]), 10).indices.shape == (3, 2)
    with pytest.raises(InputError):
        rank_neighbours(emb[:1], np.array(["a"]), 1)


@pytest.mark.parametrize("use_groups", [False, True])
def test_chunking_gives_identical_results(use_groups: bool) -> None:
    emb, labels, groups = seeded(n=33, seed=7)
    g = groups if use_groups else None
    whole = rank_neighbours(emb, labels, 6, g)
    chunked = rank_neighbours(emb, labels, 6, g, chunk=2)
    np.testing.assert_array_equal(chunked.indices, whole.indices)
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(chunked.n_eligible_relevant, whole.n_eligible_relevant)


# ---------------------------------------------------------------- split_by_source


def grouped_dataset(n_classes: int = 3, sources_per_class: int = 4,
                    images_per_source: int = 3) -> Dataset:
    labels, sources = [], []
    for c in range(n_classes):
        for s in range(sources_per_class):
            for _ in range(images_per_source):
                labels.append(f"class{c}")
                sources.append(f"c{c}-s{s}")
    paths = tuple(Path(f"/nowhere/img{i}.png") for i in range(len(labels)))
    return Dataset("grouped", Path("/nowhere"), paths, np.array(labels), np.array(sources))


def test_split_never_puts_a_source_on_both_sides() -> None:
    ds = grouped_dataset()
    for seed in range(5):
        split = split_by_source(ds, 0.25, seed)
        assert not set(split.train_sources) & set(split.test_sources)
        assert set(split.train_sources) | set(split.test_sources) == set(ds.source_ids)
        train, test = split.indices(ds)
        assert not set(ds.source_ids[train]) & set(ds.source_ids[test])


def test_split_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    ds = grouped_dataset()
    assert split_by_source(ds, 0.25, 0) == split_by_source(ds, 0.25, 0)
    splits = {split_by_source(ds, 0.25, seed).test_sources for seed in range(6)}
    assert len(splits) > 1, "every seed gave the same test sources"
    assert split_by_source(ds, 0.25, 0).test_sources != split_by_source(ds, 0.25, 1).test_sources


@pytest.mark.parametrize("seed", range(6))
def test_every_class_in_test_when_it_has_enough_sources(seed: int) -> None:
    ds = grouped_dataset(n_classes=3, sources_per_class=4)  # 0.25 -> 4 folds
    train, test = split_by_source(ds, 0.25, seed).indices(ds)
    assert set(ds.labels[test]) == set(ds.classes)
    assert set(ds.labels[train]) == set(ds.classes)


def test_split_indices_partition_the_data_set() -> None:
    ds = grouped_dataset()
    train, test = split_by_source(ds, 0.3, 2).indices(ds)
    assert len(train) and len(test)
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(ds)))


def test_split_save_load_round_trip(tmp_path: Path) -> None:
    ds = grouped_dataset()
    split = split_by_source(ds, 0.3, 11)
    path = split.save(tmp_path / "deep" / "split.json")
    loaded = Split.load(path)
    assert loaded == split
    assert isinstance(loaded.test_sources, tuple)
    for a, b in zip(loaded.indices(ds), split.indices(ds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_needs_source_ids_and_a_sane_fraction() -> None:
    ds = grouped_dataset()
    no_sources = Dataset("flat", ds.root, ds.paths, ds.labels, None)
    with pytest.raises(InputError, match="source ids"):
        split_by_source(no_sources)
    with pytest.raises(InputError, match="source ids"):
        split_by_source(ds).indices(no_sources)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(InputError):
            split_by_source(ds, fraction)


# ---------------------------------------------------------------- class prompts


def test_load_class_prompts_applies_templates(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(
        "templates:\n"
        "  - 'an H&E image of {}'\n"
        "  - '{}, histology'\n"
        "classes:\n"
        "  tumour: [dense tumour cells, mitoses]\n"
        "  stroma: pink stroma\n"
        "  normal_mucosa: []\n"
        "  necrosis:\n",
        encoding="utf-8")
    prompts = load_class_prompts(path)
    assert prompts.classes == ["tumour", "stroma", "normal_mucosa", "necrosis"]
    assert prompts.templates == ["an H&E image of {}", "{}, histology"]
    assert prompts.prompts["tumour"] == [
        "an H&E image of dense tumour cells", "dense tumour cells, histology",
        "an H&E image of mitoses", "mitoses, histology"]
    assert prompts.prompts["stroma"] == ["an H&E image of pink stroma", "pink stroma, histology"]
    # No description (empty list or bare key): the class name stands in, underscores as spaces.
    assert prompts.prompts["normal_mucosa"] == [
        "an H&E image of normal mucosa", "normal mucosa, histology"]
    assert prompts.prompts["necrosis"] == ["an H&E image of necrosis", "necrosis, histology"]
    assert prompts.source == str(path)


def test_load_class_prompts_without_templates_uses_descriptions_as_is(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text('{"classes": {"a": "first text", "b": ["x", "y"]}}', encoding="utf-8")
    assert load_class_prompts(path).prompts == {"a": ["first text"], "b": ["x", "y"]}


@pytest.mark.parametrize("text", ["templates: ['{}']\n", "classes: [a, b]\n", "- a\n- b\n",
                                  "classes: {a: [unclosed\n"])
def test_load_class_prompts_rejects_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.yaml"):
        load_class_prompts(path)


def test_load_class_prompts_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.yaml"):
        load_class_prompts(tmp_path / "absent.yaml")


# ---------------------------------------------------------------- zero-shot


def test_zero_shot_predict_by_hand() -> None:
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]], np.float32)
    classes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    predicted, sims = zero_shot_predict(images, classes, ["a", "b", "c"])
    assert predicted.tolist() == ["a", "b", "b", "a"]
    assert sims.shape == (4, 3)
    np.testing.assert_allclose(sims[2], [0.6, 0.8, -0.6], atol=1e-6)
