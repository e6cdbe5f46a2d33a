"""Metrics against cases worked by hand, naive loops and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from histoseek.errors import InputError
from histoseek.evaluation.metrics import (
    average_precision_at_k,
    classification_metrics,
    confusion,
    crossmodal_metrics,
    kimia_accuracies,
    majority_vote_at_k,
    map_at_k,
    mean_reciprocal_rank,
    precision_at_k,
    recall_at_k,
    retrieval_metrics,
)

# scikit-learn's UndefinedMetricWarning or "y_pred contains classes not in y_true" would
# mean a metric silently changed meaning; make any warning fail.
pytestmark = pytest.mark.filterwarnings("error")

# Three queries; relevance (1 = same label as the query):
#   q0 "a": a b a -> 1 0 1
#   q1 "b": a a b -> 0 0 1
#   q2 "c": a b a -> 0 0 0
QUERIES = ["a", "b", "c"]
NEIGHBOURS = [["a", "b", "a"], ["a", "a", "b"], ["a", "b", "a"]]


# ---------------------------------------------------------------- R@K, P@K, MRR


def test_recall_at_k_is_top_k_hit_rate() -> None:
    # R@1: only q0 hits at rank 1 -> 1/3. R@2: no new hits at rank 2 -> 1/3.
    # R@3: q1 hits at rank 3 -> 2/3 (q0 counts once although it has two hits).
    assert recall_at_k(QUERIES, NEIGHBOURS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(QUERIES, NEIGHBOURS, 2) == pytest.approx(1 / 3)
    assert recall_at_k(QUERIES, NEIGHBOURS, 3) == pytest.approx(2 / 3)


def test_precision_at_k_is_mean_fraction_relevant() -> None:
    # P@1 = (1 + 0 + 0) / 3 = 1/3.
    # P@3 = (2/3 + 1/3 + 0/3) / 3 = 1/3.
    assert precision_at_k(QUERIES, NEIGHBOURS, 1) == pytest.approx(1 / 3)
    assert precision_at_k(QUERIES, NEIGHBOURS, 3) == pytest.approx(1 / 3)


def test_mean_reciprocal_rank() -> None:
    # First hits: q0 rank 1, q1 rank 3, q2 none -> (1 + 1/3 + 0) / 3 = 4/9.
    assert mean_reciprocal_rank(QUERIES, NEIGHBOURS) == pytest.approx(4 / 9)
    # Within k=2: q1's hit at rank 3 no longer counts -> (1 + 0 + 0) / 3 = 1/3.
    assert mean_reciprocal_rank(QUERIES, NEIGHBOURS, k=2) == pytest.approx(1 / 3)


def test_mean_reciprocal_rank_no_relevant_hit_scores_zero() -> None:
    # q0 first hit at rank 2 -> 1/2; q1 has none -> 0; mean = 0.25.
    assert mean_reciprocal_rank(["a", "a"], [["b", "a"], ["b", "c"]]) == pytest.approx(0.25)
    assert mean_reciprocal_rank(["a"], [["b", "c", "d"]]) == 0.0


def test_ragged_lists_and_none_padding_agree() -> None:
    ragged = [["a"], ["b", "b", "a"]]
    padded = np.array([["a", None, None], ["b", "b", "a"]], dtype=object)
    for k in (1, 2, 3):
        assert recall_at_k(["a", "a"], ragged, k) == recall_at_k(["a", "a"], padded, k)
        assert precision_at_k(["a", "a"], ragged, k) == precision_at_k(["a", "a"], padded, k)
    # q0 has one neighbour, relevant; P@3 still divides by 3: (1/3 + 1/3) / 2 = 1/3.
    assert precision_at_k(["a", "a"], padded, 3) == pytest.approx(1 / 3)


def test_k_beyond_neighbours_counts_missing_ranks_as_misses() -> None:
    # One neighbour, relevant: R@5 = 1 (it is in the top 5), P@5 = 1/5.
    assert recall_at_k(["a"], [["a"]], 5) == 1.0
    assert precision_at_k(["a"], [["a"]], 5) == pytest.approx(0.2)


def test_numeric_labels_in_a_plain_array() -> None:
    # q0 = 1: 1 2 -> hit at rank 1; q1 = 2: 1 1 -> none. R@2 = 1/2, P@2 = (1/2 + 0) / 2.
    neighbours = np.array([[1, 2], [1, 1]])
    assert recall_at_k(np.array([1, 2]), neighbours, 2) == 0.5
    assert precision_at_k(np.array([1, 2]), neighbours, 2) == 0.25


def _random_rankings(seed: int, q: int = 40, k: int = 12, n_labels: int = 4):
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, n_labels, size=q)
    neighbours = rng.integers(0, n_labels, size=(q, k))
    return queries, neighbours


@pytest.mark.parametrize("seed", range(5))
def test_recall_monotone_and_precision_bounded(seed: int) -> None:
    queries, neighbours = _random_rankings(seed)
    recalls = [recall_at_k(queries, neighbours, k) for k in range(1, 13)]
    assert all(a <= b for a, b in itertools.pairwise(recalls))
    for k in range(1, 13):
        precision = precision_at_k(queries, neighbours, k)
        assert 0.0 <= precision <= 1.0
        assert precision <= recall_at_k(queries, neighbours, k)  # a hit rate bounds P@k


# ---------------------------------------------------------------- mMV@K


def test_majority_vote_by_hand() -> None:
    # q0 "a": a b a -> a twice -> "a" correct; q1 "b": a a b -> "a" wrong; q2 "c": wrong.
    assert majority_vote_at_k(QUERIES, NEIGHBOURS, 3) == pytest.approx(1 / 3)


def test_majority_vote_tie_goes_to_highest_ranked_label() -> None:
    # b a a b: a=2, b=2 tie; b is seen first (rank 1) -> b wins, query "a" is wrong.
    assert majority_vote_at_k(["a"], [["b", "a", "a", "b"]], 4) == 0.0
    # a b b a: same counts, a seen first -> a wins.
    assert majority_vote_at_k(["a"], [["a", "b", "b", "a"]], 4) == 1.0
    # Three-way tie c a b: the rank-1 label c wins, so query "c" is right, "a" is wrong.
    assert majority_vote_at_k(["c", "a"], [["c", "a", "b"], ["c", "a", "b"]], 3) == 0.5
    # A strict majority beats rank: b a a at k=3 -> a (2 votes) wins over rank-1 b.
    assert majority_vote_at_k(["a"], [["b", "a", "a"]], 3) == 1.0


def test_majority_vote_query_without_neighbours_is_wrong() -> None:
    assert majority_vote_at_k(["a", "a"], [["a"], []], 1) == 0.5


# ---------------------------------------------------------------- mAP@K


def test_map_normalisation_versus_sish() -> None:
    # Only 2 eligible "a" items, retrieved at ranks 1 and 2, k = 5:
    # sum P@i * rel_i = P@1 + P@2 = 1 + 1 = 2.
    # Standard: 2 / min(5, 2) = 1.0 (a perfect ranking). SISH: 2 / 5 = 0.4.
    neighbours = [["a", "a", "b", "c", "d"]]
    assert map_at_k(["a"], neighbours, 5, [2]) == pytest.approx(1.0)
    assert map_at_k(["a"], neighbours, 5, [2], normalise="k") == pytest.approx(0.4)
    assert map_at_k(["a"], neighbours, 5, normalise="k") == pytest.approx(0.4)


def test_average_precision_by_hand() -> None:
    # a b a b b, 3 eligible "a": P@1 = 1/1 at rank 1, P@3 = 2/3 at rank 3; sum = 5/3.
    # Standard: (5/3) / min(5, 3) = 5/9. SISH: (5/3) / 5 = 1/3.
    neighbours = [["a", "b", "a", "b", "b"]]
    assert map_at_k(["a"], neighbours, 5, [3]) == pytest.approx(5 / 9)
    assert map_at_k(["a"], neighbours, 5, [3], normalise="k") == pytest.approx(1 / 3)
    # k = 3, 10 eligible: sum 5/3 over min(3, 10) = 3 -> 5/9.
    assert map_at_k(["a"], neighbours, 3, [10]) == pytest.approx(5 / 9)


def test_map_excludes_queries_without_eligible_relevant_items() -> None:
    # q0 perfect (AP 1.0); q1 "z" has no "z" in the database (n_relevant 0): excluded,
    # so mAP = 1.0, not (1.0 + 0) / 2. The per-query AP marks it NaN for counting.
    queries, neighbours = ["a", "z"], [["a", "b"], ["a", "b"]]
    ap = average_precision_at_k(queries, neighbours, 2, [1, 0])
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert int(np.isnan(ap).sum()) == 1
    assert map_at_k(queries, neighbours, 2, [1, 0]) == 1.0
    # A query with eligible items but no hit is kept and scores 0: (1 + 0) / 2.
    assert map_at_k(queries, neighbours, 2, [1, 4]) == 0.5


def test_map_rejects_inconsistent_or_missing_counts() -> None:
    with pytest.raises(InputError, match="n_relevant"):
        map_at_k(["a"], [["a", "a"]], 2)  # standard mAP needs n_relevant
    with pytest.raises(InputError, match="n_relevant says 1"):
        map_at_k(["a"], [["a", "a"]], 2, [1])  # 2 hits ranked, only 1 eligible
    with pytest.raises(InputError, match="undefined"):
        map_at_k(["a"], [["b"]], 1, [0])
    with pytest.raises(InputError, match="integers"):
        map_at_k(["a"], [["a"]], 1, [1, 2])
    with pytest.raises(InputError, match="normalise"):
        map_at_k(["a"], [["a"]], 1, [1], normalise="n")  # type: ignore[arg-type]


def _naive_ap(query, row, k, n_rel, by_k) -> float:
    hits, total = 0, 0.0
    for i, label in enumerate(row[:k], start=1):
        if label == query:
            hits += 1
            total += hits / i
    return total / (k if by_k else min(k, n_rel))


@pytest.mark.parametrize("seed", range(3))
def test_map_matches_naive_loop(seed: int) -> None:
    queries, neighbours = _random_rankings(seed)
    n_rel = np.array([(row == q).sum() + 3 for q, row in zip(queries, neighbours, strict=True)])
    for k in (1, 5, 12):
        for by_k in (False, True):
            rows = zip(queries, neighbours, n_rel, strict=True)
            naive = np.mean([_naive_ap(q, list(r), k, n, by_k) for q, r, n in rows])
            normalise = "k" if by_k else "relevant"
            got = map_at_k(queries, neighbours, k, n_rel, normalise=normalise)
            assert got == pytest.approx(naive)
        assert map_at_k(queries, neighbours, k, n_rel) >= map_at_k(
            queries, neighbours, k, n_rel, normalise="k"
        )


# ---------------------------------------------------------------- summary and input checks


def test_retrieval_metrics_collects_every_k() -> None:
    out = retrieval_metrics(QUERIES, NEIGHBOURS, ks=(1, 3), n_relevant=[2, 1, 1])
    assert set(out) == {"R@1", "P@1", "mMV@1", "mAP@1", "R@3", "P@3", "mMV@3", "mAP@3", "MRR"}
    assert out["R@3"] == recall_at_k(QUERIES, NEIGHBOURS, 3)
    assert out["MRR"] == pytest.approx(4 / 9)
    # mAP@3: q0 (1 + 2/3) / 2 = 5/6; q1 (1/3) / 1 = 1/3; q2 0 -> (5/6 + 1/3) / 3 = 7/18.
    assert out["mAP@3"] == pytest.approx(7 / 18)
    assert not any(key.startswith("mAP") for key in retrieval_metrics(QUERIES, NEIGHBOURS))


@pytest.mark.parametrize(
    ("queries", "neighbours", "k", "match"),
    [
        (["a", "b"], [["a"]], 1, "2 queries"),
        (["a"], [["a"]], 0, "positive integer"),
        (["a"], [["a"]], True, "positive integer"),
        ([None], [["a"]], 1, "None"),
        ([], [], 1, "empty"),
        (["a"], [[]], 1, "no query has any neighbour"),
        (["a"], np.array([[None, "a"]], dtype=object), 1, "pad only at the end"),
        (["a"], np.zeros((1, 1, 1)), 1, "2-D"),
    ],
)
def test_retrieval_input_errors(queries, neighbours, k, match) -> None:
    with pytest.raises(InputError, match=match):
        recall_at_k(queries, neighbours, k)


# ---------------------------------------------------------------- Kimia Path24


def test_kimia_accuracies_by_hand() -> None:
    # Scan A: 4 patches, 3 right; B: 2 patches, 2 right; C: 4 patches, 1 right.
    # eta_p = (3 + 2 + 1) / 10 = 0.6
    # eta_w = (3/4 + 2/2 + 1/4) / 3 = 2/3
    # eta_total = 0.6 * 2/3 = 0.4
    true = ["A"] * 4 + ["B"] * 2 + ["C"] * 4
    predicted = [*"AAAB", *"BB", *"CAAB"]  # A 3/4 right, B 2/2, C 1/4
    out = kimia_accuracies(true, predicted)
    assert out["eta_p"] == pytest.approx(0.6)
    assert out["eta_w"] == pytest.approx(2 / 3)
    assert out["eta_total"] == pytest.approx(0.4)
    assert out["eta_w"] == pytest.approx(balanced_accuracy_score(true, predicted))


def test_kimia_prediction_of_unseen_scan_is_just_wrong() -> None:
    # A: 2 patches, 1 right (other predicted as "D", a scan with no test patches); B: 1/1.
    # eta_w = (1/2 + 1) / 2 = 0.75 over the 2 scans with test patches, not 3.
    out = kimia_accuracies(["A", "A", "B"], ["A", "D", "B"])
    assert out["eta_w"] == pytest.approx(0.75)
    assert out["eta_p"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- cross-modal

# Rows are images, columns texts; image i pairs with text i (the diagonal).
SIM_4 = np.array(
    [
        [0.9, 0.1, 0.3, 0.2],
        [0.8, 0.7, 0.1, 0.0],
        [0.1, 0.6, 0.5, 0.2],
        [0.2, 0.3, 0.4, 0.1],
    ]
)


def test_crossmodal_4x4_by_hand() -> None:
    # i2t, by rows: img0 0.9 is top -> rank 1; img1 0.7 < 0.8 -> 2; img2 0.5 < 0.6 -> 2;
    #   img3 0.1 < 0.2, 0.3, 0.4 -> 4. Ranks 1 2 2 4: R@1 1/4, R@2 3/4, R@3 3/4, MedR 2.
    # t2i, by columns: txt0 0.9 top -> 1; txt1 0.7 top of (.1 .7 .6 .3) -> 1;
    #   txt2 0.5 top of (.3 .1 .5 .4) -> 1; txt3 0.1 below 0.2 and 0.2 (0.0 below) -> 3.
    #   Ranks 1 1 1 3: R@1 3/4, R@2 3/4, R@3 1, MedR 1.
    out = crossmodal_metrics(SIM_4, ks=(1, 2, 3))
    assert out == pytest.approx(
        {
            "i2t_R@1": 0.25, "i2t_R@2": 0.75, "i2t_R@3": 0.75, "i2t_MedR": 2.0,
            "t2i_R@1": 0.75, "t2i_R@2": 0.75, "t2i_R@3": 1.0, "t2i_MedR": 1.0,
        }
    )  # fmt: skip


def test_crossmodal_several_captions_per_image() -> None:
    # Image 0 owns texts {0, 1}, image 1 owns {2, 3}.
    # i2t: img0 best positive 0.9 (txt1), negatives 0.8, 0.1 -> rank 1;
    #      img1 best positive 0.6 (txt3), negative 0.7 above it -> rank 2. R@1 1/2, MedR 1.5.
    # t2i: txt0 0.2 vs img1 0.7 -> 2; txt1 0.9 vs 0.3 -> 1; txt2 0.4 vs 0.8 -> 2;
    #      txt3 0.6 vs 0.1 -> 1. Ranks 2 1 2 1: R@1 1/2, MedR 1.5.
    sim = np.array([[0.2, 0.9, 0.8, 0.1], [0.7, 0.3, 0.4, 0.6]])
    out = crossmodal_metrics(sim, [{0, 1}, {2, 3}], ks=(1, 2))
    assert out == pytest.approx(
        {
            "i2t_R@1": 0.5, "i2t_R@2": 1.0, "i2t_MedR": 1.5,
            "t2i_R@1": 0.5, "t2i_R@2": 1.0, "t2i_MedR": 1.5,
        }
    )  # fmt: skip


def test_crossmodal_ties_count_against_the_query() -> None:
    # A constant matrix: every negative ties the positive and counts ahead -> rank 3 each.
    out = crossmodal_metrics(np.ones((3, 3)), ks=(1,))
    assert out == {"i2t_R@1": 0.0, "i2t_MedR": 3.0, "t2i_R@1": 0.0, "t2i_MedR": 3.0}


def _open_clip_style(logits: np.ndarray, positive: np.ndarray, ks) -> dict[str, float]:
    """open_clip's loop: argsort each row, find the first positive's 0-based position."""
    out = {}
    for name, scores, pos in (("i2t", logits, positive), ("t2i", logits.T, positive.T)):
        preds = []
        for row, row_pos in zip(scores, pos, strict=True):
            ranking = np.argsort(-row, kind="stable")
            preds.append(int(np.flatnonzero(row_pos[ranking])[0]))
        preds = np.array(preds)
        for k in ks:
            out[f"{name}_R@{k}"] = float(np.mean(preds < k))
        out[f"{name}_MedR"] = float(np.median(preds + 1))
    return out


def test_crossmodal_matches_naive_loop_on_random_11x11() -> None:
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(11, 11)) + 1.5 * np.eye(11)
    expected = _open_clip_style(sim, np.eye(11, dtype=bool), (1, 5, 10))
    assert crossmodal_metrics(sim) == pytest.approx(expected)


def test_crossmodal_matches_naive_loop_with_several_captions() -> None:
    rng = np.random.default_rng(1)
    owner = np.concatenate([np.arange(5), rng.integers(0, 5, size=6)])  # 11 texts, 5 images
    positives = [set(np.flatnonzero(owner == i).tolist()) for i in range(5)]
    sim = rng.normal(size=(5, 11))
    mask = np.zeros((5, 11), dtype=bool)
    mask[owner, np.arange(11)] = True
    expected = _open_clip_style(sim, mask, (1, 3, 5))
    assert crossmodal_metrics(sim, positives, ks=(1, 3, 5)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("sim", "positives", "match"),
    [
        (np.zeros((2, 3)), None, "square"),
        (np.array([[np.nan]]), None, "NaN"),
        (np.zeros((2, 3)), [{0}, {1}], "text 2 belongs to no image"),
        (np.zeros((2, 2)), [{0}, {2}], r"\[0, 2\)"),
        (np.zeros((2, 2)), [{0}, set()], "image 1"),
        (np.zeros((2, 2)), [{0, 1}], "1 entries for 2 images"),
    ],
)
def test_crossmodal_input_errors(sim, positives, match) -> None:
    with pytest.raises(InputError, match=match):
        crossmodal_metrics(sim, positives)


# ---------------------------------------------------------------- classification


def test_classification_metrics_by_hand() -> None:
    # true a a a a b, predicted all a.
    # accuracy = 4/5 = 0.8; balanced = (recall a 4/4 + recall b 0/1) / 2 = 0.5.
    # F1(a): P = 4/5, R = 1 -> 2 * 0.8 / 1.8 = 8/9. F1(b) = 0 (never predicted).
    # weighted F1 = (4 * 8/9 + 1 * 0) / 5 = 32/45.
    out = classification_metrics(list("aaaab"), list("aaaaa"))
    assert out == pytest.approx({"accuracy": 0.8, "balanced_accuracy": 0.5, "weighted_f1": 32 / 45})


def test_balanced_accuracy_ignores_classes_only_predicted() -> None:
    # true a b, predicted a c: recall a = 1, recall b = 0 -> 0.5; c has no true items.
    assert classification_metrics(["a", "b"], ["a", "c"])["balanced_accuracy"] == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, size=60)
    predicted = np.where(rng.random(60) < 0.6, true, rng.integers(0, 4, size=60))
    out = classification_metrics(true, predicted, labels=[0, 1, 2, 3])
    assert out["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, predicted))
    assert out["weighted_f1"] == pytest.approx(
        f1_score(true, predicted, average="weighted", zero_division=0)
    )


def test_confusion_rows_true_columns_predicted() -> None:
    # true a a b c, predicted a b b a: (a,a) (a,b) (b,b) (c,a).
    matrix, labels = confusion(list("aabc"), list("abba"))
    assert labels.tolist() == ["a", "b", "c"]
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    matrix, labels = confusion(list("aabc"), list("abba"), labels=["c", "b", "a"])
    assert labels.tolist() == ["c", "b", "a"]
    assert matrix.tolist() == [[0, 0, 1], [0, 1, 0], [0, 1, 1]]


@pytest.mark.parametrize(
    ("true", "predicted", "labels", "match"),
    [
        (["a", "b"], ["a"], None, "2 true labels but 1"),
        ([], [], None, "no labels"),
        (["a"], [1], None, "one type"),
        (["a", "b"], ["a", "b"], ["a"], r"\['b'\]"),
        (["a"], ["a"], ["a", "a"], "distinct"),
    ],
)
def test_classification_input_errors(true, predicted, labels, match) -> None:
    with pytest.raises(InputError, match=match):
        confusion(true, predicted, labels)
