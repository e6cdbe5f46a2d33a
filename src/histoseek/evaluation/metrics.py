"""Retrieval, cross-modal and classification metrics, each under a named paper convention.

The field reuses names for different quantities (``P@K`` is precision in one paper and a
top-K hit rate in another; ``mAP@K`` is divided by K in SISH and by the number of relevant
items elsewhere), so numbers are comparable only under the same definition. Every function
here states its definition. Classification counts come from scikit-learn; only what no kept
library computes is written here.

Rankings. ``neighbour_labels`` holds, for each query, the labels of its neighbours ranked
best first and already excluding the query's own source (slide or patient), so nothing here
needs to know about leakage. Give either a list of per-query label sequences, which may be
ragged when a query has fewer than K eligible neighbours, or a 2-D array ``[q, K]`` whose
short rows are padded with ``None`` at the end. A missing neighbour is never relevant, so
k may exceed the neighbours given (a small gallery) and the absent ranks count as misses.
``None`` is not a valid label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import Literal

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from histoseek.errors import InputError

Labels = Sequence[Hashable] | np.ndarray  # one label per item, 1-D
Rankings = Sequence[Sequence[Hashable | None]] | np.ndarray  # ragged lists or padded [q, K]


def _object_vector(values: Iterable[Hashable], name: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {values.shape}")
    items = list(values)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _rankings(
    query_labels: Labels, neighbour_labels: Rankings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return query labels [q], neighbour labels [q, K] (``None``-padded), valid, relevant."""
    queries = _object_vector(query_labels, "query_labels")
    if len(queries) == 0:
        raise InputError("query_labels is empty; a metric needs at least one query")
    if any(label is None for label in queries):
        raise InputError("query_labels contains None; every query needs a label")
    if isinstance(neighbour_labels, np.ndarray) and neighbour_labels.ndim != 2:
        raise InputError(f"neighbour_labels must be 2-D [q, K], got shape {neighbour_labels.shape}")
    rows = [list(row) for row in neighbour_labels]
    if len(rows) != len(queries):
        raise InputError(
            f"neighbour_labels has {len(rows)} rows but there are {len(queries)} queries; "
            "give one ranked row per query"
        )
    width = max(len(row) for row in rows)
    if width == 0:
        raise InputError("no query has any neighbour; rank at least one neighbour per query")
    labels = np.full((len(rows), width), None, dtype=object)
    valid = np.zeros((len(rows), width), dtype=bool)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = row
        valid[i, : len(row)] = [label is not None for label in row]
    gaps = valid[:, 1:] & ~valid[:, :-1]
    if gaps.any():
        row = int(np.flatnonzero(gaps.any(axis=1))[0])
        raise InputError(
            f"neighbour_labels row {row} has None before a real neighbour; pad only at the end"
        )
    relevant = (labels == queries[:, None]) & valid
    return queries, labels, valid, relevant


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _top(relevant: np.ndarray, k: int) -> np.ndarray:
    """Return relevance of ranks 1..k [q, k]; ranks past the given neighbours are misses."""
    k = _check_k(k)
    top = relevant[:, :k]
    return np.pad(top, ((0, 0), (0, k - top.shape[1])))


def recall_at_k(query_labels: Labels, neighbour_labels: Rankings, k: int) -> float:
    """Return top-k accuracy: the fraction of queries with a same-label item in their top k.

    This is the retrieval "R@K" of KEP and LGFFEM (which also call it "P@K"); it is a hit
    rate, not recall over all relevant items, and is non-decreasing in k.
    """
    *_, relevant = _rankings(query_labels, neighbour_labels)
    return float(_top(relevant, k).any(axis=1).mean())


def precision_at_k(query_labels: Labels, neighbour_labels: Rankings, k: int) -> float:
    """Return mean precision at k: the fraction of each query's top k sharing its label.

    Always divided by k, so a query with fewer than k neighbours is penalised for the
    missing ones (the usual IR convention). Lies in [0, 1].
    """
    *_, relevant = _rankings(query_labels, neighbour_labels)
    return float(_top(relevant, k).sum(axis=1).mean() / k)


def majority_vote_labels(neighbour_labels: Rankings, k: int) -> np.ndarray:
    """Return each query's top-k majority label (``None`` for a query with no neighbour).

    The majority is the most frequent label among the valid top-k neighbours. Ties go to the
    tied label ranked highest (first seen), so the nearest neighbour decides, as it would in
    a 1-NN classifier. This is the k-NN prediction behind mMV@k and its confusion matrix.
    """
    rows = [list(row) for row in neighbour_labels]
    k = _check_k(k)
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        top = [label for label in row[:k] if label is not None]
        if not top:
            out[i] = None
            continue
        counts = Counter(top)
        most = max(counts.values())
        out[i] = next(label for label in top if counts[label] == most)
    return out


def majority_vote_at_k(query_labels: Labels, neighbour_labels: Rankings, k: int) -> float:
    """Return mMV@k (RetCCL, SISH): the fraction of queries whose top-k majority is their label.

    See ``majority_vote_labels`` for the vote and its tie rule; a query with no neighbours
    counts as wrong.
    """
    queries, *_ = _rankings(query_labels, neighbour_labels)
    winners = majority_vote_labels(neighbour_labels, k)
    return float(np.mean([w is not None and w == q for w, q in zip(winners, queries, strict=True)]))


def average_precision_at_k(
    query_labels: Labels,
    neighbour_labels: Rankings,
    k: int,
    n_relevant: Sequence[int] | np.ndarray | None = None,
    *,
    normalise: Literal["relevant", "k"] = "relevant",
) -> np.ndarray:
    """Return AP@k per query, float [q], NaN where the query has no eligible relevant item.

    ``AP@k = (1 / D) * sum_{i<=k} P@i * rel_i`` with ``rel_i`` 1 when rank i shares the
    label. ``normalise="relevant"`` (standard, needs ``n_relevant``) uses
    ``D = min(k, n_relevant)``, so a perfect ranking scores 1 even when fewer than k items
    are relevant. ``normalise="k"`` uses ``D = k`` as SISH does, which caps a query with
    ``n_relevant < k`` below 1; kept only to compare with SISH's tables.

    Args:
        n_relevant: int [q], database items sharing the query's label that were eligible
            (not excluded with the query's source). Queries with 0 get NaN, because AP is
            undefined without relevant items; count them with ``np.isnan``. Optional for
            ``normalise="k"``, where omitting it scores every query.

    Raises:
        InputError: ``n_relevant`` is missing for ``normalise="relevant"``, has the wrong
            shape, or is smaller than the relevant hits actually ranked.
    """
    if normalise not in ("relevant", "k"):
        raise InputError(f"normalise must be 'relevant' or 'k', got {normalise!r}")
    *_, relevant = _rankings(query_labels, neighbour_labels)
    n_queries = relevant.shape[0]
    hits = _top(relevant, k).astype(np.float64)
    precision = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    summed = (precision * hits).sum(axis=1)
    if n_relevant is None:
        if normalise == "relevant":
            raise InputError(
                "mAP with normalise='relevant' needs n_relevant (eligible same-label items per "
                "query); pass it, or normalise='k' for SISH's convention"
            )
        return summed / k
    eligible = np.asarray(n_relevant)
    if eligible.shape != (n_queries,) or not np.issubdtype(eligible.dtype, np.integer):
        raise InputError(
            f"n_relevant must be {n_queries} integers, got shape {eligible.shape} "
            f"of {eligible.dtype}"
        )
    ranked = relevant.sum(axis=1)
    if (eligible < ranked).any():
        i = int(np.flatnonzero(eligible < ranked)[0])
        raise InputError(
            f"query {i} has {ranked[i]} relevant neighbours ranked but n_relevant says "
            f"{eligible[i]}; count eligible same-label items after excluding the query's source"
        )
    denominator = np.minimum(k, eligible) if normalise == "relevant" else np.full(n_queries, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = summed / denominator
    ap[eligible == 0] = np.nan
    return ap


def map_at_k(
    query_labels: Labels,
    neighbour_labels: Rankings,
    k: int,
    n_relevant: Sequence[int] | np.ndarray | None = None,
    *,
    normalise: Literal["relevant", "k"] = "relevant",
) -> float:
    """Return mAP@k: AP@k averaged over queries that have an eligible relevant item.

    See ``average_precision_at_k`` for AP and the two normalisations. Queries with
    ``n_relevant == 0`` are excluded from the mean, not scored 0, so a database that lacks
    a class does not drag mAP down for a reason retrieval cannot fix.

    Raises:
        InputError: as ``average_precision_at_k``, or no query has a relevant item.
    """
    ap = average_precision_at_k(query_labels, neighbour_labels, k, n_relevant, normalise=normalise)
    if np.isnan(ap).all():
        raise InputError("no query has an eligible relevant item (n_relevant all 0); mAP undefined")
    return float(np.nanmean(ap))


def mean_reciprocal_rank(
    query_labels: Labels, neighbour_labels: Rankings, k: int | None = None
) -> float:
    """Return MRR: the mean of 1 / rank of the first same-label neighbour within the top k.

    Ranks are 1-based; a query with no relevant neighbour in the top k scores 0. ``k=None``
    uses every ranked neighbour (K).
    """
    *_, relevant = _rankings(query_labels, neighbour_labels)
    top = _top(relevant, relevant.shape[1] if k is None else k)
    first = top.argmax(axis=1)
    reciprocal = np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)
    return float(reciprocal.mean())


def retrieval_metrics(
    query_labels: Labels,
    neighbour_labels: Rankings,
    ks: Sequence[int] = (1, 5, 10),
    n_relevant: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """Return ``R@k``, ``P@k``, ``mMV@k`` (and ``mAP@k`` given n_relevant) for each k, and MRR.

    mAP uses the standard ``min(k, n_relevant)`` normalisation; it is left out without
    ``n_relevant`` rather than guessed. MRR uses all K ranked neighbours.
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = recall_at_k(query_labels, neighbour_labels, k)
        out[f"P@{k}"] = precision_at_k(query_labels, neighbour_labels, k)
        out[f"mMV@{k}"] = majority_vote_at_k(query_labels, neighbour_labels, k)
        if n_relevant is not None:
            out[f"mAP@{k}"] = map_at_k(query_labels, neighbour_labels, k, n_relevant)
    out["MRR"] = mean_reciprocal_rank(query_labels, neighbour_labels)
    return out


def _paired_labels(true: Labels, predicted: Labels) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true), np.asarray(predicted)
    if t.ndim != 1 or p.ndim != 1:
        raise InputError(f"labels must be 1-D, got shapes {t.shape} and {p.shape}")
    if len(t) != len(p):
        raise InputError(f"{len(t)} true labels but {len(p)} predictions; give one per item")
    if len(t) == 0:
        raise InputError("no labels given; a metric needs at least one item")
    if (t.dtype.kind in "US") != (p.dtype.kind in "US"):
        raise InputError(f"true labels are {t.dtype} but predictions are {p.dtype}; use one type")
    return t, p


def kimia_accuracies(true: Labels, predicted: Labels) -> dict[str, float]:
    """Return Kimia Path24 accuracies (Babaie et al. 2017) from per-patch scan labels.

    ``eta_p = sum_s |R_s| / n_tot`` (patch-to-scan accuracy, R_s the correctly labelled
    test patches of scan s), ``eta_w = (1 / n_S) * sum_s |R_s| / |Gamma_s|`` (whole-scan
    accuracy: mean per-scan recall over the n_S scans with test patches, so small scans
    weigh as much as large ones) and ``eta_total = eta_p * eta_w``.
    """
    t, p = _paired_labels(true, predicted)
    eta_p = float(accuracy_score(t, p))
    # Macro recall over the scans present in `true` is eta_w; balanced_accuracy_score is the
    # same number but warns when a prediction names a scan with no test patches.
    eta_w = float(recall_score(t, p, labels=np.unique(t), average="macro", zero_division=0))
    return {"eta_p": eta_p, "eta_w": eta_w, "eta_total": eta_p * eta_w}


def _positive_mask(
    positives: Sequence[Collection[int]] | None, n_img: int, n_txt: int
) -> np.ndarray:
    if positives is None:
        if n_img != n_txt:
            raise InputError(
                f"similarity is {n_img}x{n_txt}; without image_to_text_positives it must be "
                "square (image i pairs with text i)"
            )
        return np.eye(n_img, dtype=bool)
    if len(positives) != n_img:
        raise InputError(f"image_to_text_positives has {len(positives)} entries for {n_img} images")
    mask = np.zeros((n_img, n_txt), dtype=bool)
    for i, texts in enumerate(positives):
        idx = np.asarray(sorted(texts), dtype=np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_txt:
            raise InputError(f"image {i} needs text positives in [0, {n_txt}), got {sorted(texts)}")
        mask[i, idx] = True
    if not mask.any(axis=0).all():
        j = int(np.flatnonzero(~mask.any(axis=0))[0])
        raise InputError(f"text {j} belongs to no image; every text needs a positive image")
    return mask


def _best_positive_rank(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Return the 1-based rank of each row's best-scoring positive among its candidates."""
    best = np.where(positive, scores, -np.inf).max(axis=1)
    return 1 + (~positive & (scores >= best[:, None])).sum(axis=1)


def crossmodal_metrics(
    similarity: np.ndarray,
    image_to_text_positives: Sequence[Collection[int]] | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Return image→text and text→image R@k and median rank on paired data.

    Follows CLIP / open_clip retrieval: a query is a hit at k when any of its positives is
    in the top k; MedR is the median 1-based rank of the best-ranked positive (VSE++). Other
    positives of the same query do not push a positive down. A negative tied with the best
    positive counts ahead of it, so a constant matrix scores poorly rather than perfectly.
    MedR is the plain median (x.5 for an even count); open_clip floors it.

    Args:
        similarity: float [n_img, n_txt], higher means more similar.
        image_to_text_positives: for each image, the indices of its texts; default pairs
            image i with text i. Text→image positives are the inverse mapping.
        ks: cut-offs; k at or past the number of candidates gives R@k = 1.

    Returns:
        Keys ``i2t_R@k``, ``t2i_R@k`` for each k, ``i2t_MedR`` and ``t2i_MedR``.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or 0 in sim.shape:
        raise InputError(f"similarity must be a non-empty 2-D matrix, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise InputError("similarity contains NaN or inf; check the embeddings")
    positive = _positive_mask(image_to_text_positives, *sim.shape)
    out: dict[str, float] = {}
    for direction, scores, pos in (("i2t", sim, positive), ("t2i", sim.T, positive.T)):
        ranks = _best_positive_rank(scores, pos)
        for k in ks:
            k = _check_k(k)
            out[f"{direction}_R@{k}"] = float((ranks <= k).mean())
        out[f"{direction}_MedR"] = float(np.median(ranks))
    return out


def _vocabulary(t: np.ndarray, p: np.ndarray, labels: Labels | None) -> np.ndarray:
    if labels is None:
        return np.unique(np.concatenate([t, p]))
    vocab = np.asarray(labels)
    if vocab.ndim != 1 or len(np.unique(vocab)) != len(vocab):
        raise InputError("labels must be a 1-D list of distinct labels")
    unknown = sorted(set(np.unique(np.concatenate([t, p])).tolist()) - set(vocab.tolist()))
    if unknown:
        raise InputError(f"labels {unknown[:5]} occur in the data but not in labels; add them")
    return vocab


def classification_metrics(
    true: Labels,
    predicted: Labels,
    labels: Labels | None = None,
) -> dict[str, float]:
    """Return accuracy, balanced accuracy and support-weighted F1 (scikit-learn).

    Balanced accuracy is the mean recall over classes present in ``true`` (a predicted
    class with no true items does not add a 0). F1 of a class never predicted is 0, not a
    warning. ``labels``, when given, is the full label set and anything outside it raises.
    """
    t, p = _paired_labels(true, predicted)
    vocab = _vocabulary(t, p, labels)
    return {
        "accuracy": float(accuracy_score(t, p)),
        "balanced_accuracy": float(
            recall_score(t, p, labels=np.unique(t), average="macro", zero_division=0)
        ),
        "weighted_f1": float(f1_score(t, p, labels=vocab, average="weighted", zero_division=0)),
    }


def confusion(
    true: Labels,
    predicted: Labels,
    labels: Labels | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the confusion matrix (rows true, columns predicted, int counts) and its labels.

    Without ``labels`` the order is the sorted union of true and predicted labels, so the
    matrix is square even when a class is only ever predicted.
    """
    t, p = _paired_labels(true, predicted)
    vocab = _vocabulary(t, p, labels)
    return confusion_matrix(t, p, labels=vocab), vocab
