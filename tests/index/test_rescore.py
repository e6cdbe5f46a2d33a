"""Re-scoring IVF-PQ candidates with the exact vectors: recall goes up, order becomes exact."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from histoseek.index.rescore import RESCORE_FACTOR, rescore
from histoseek.index.vectors import FaissIndex

DIM, K = 64, 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def setting() -> dict[str, np.ndarray | FaissIndex]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # steady on a busy 2-core box
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    vectors = _unit(centres[rng.integers(0, 50, 6000)] + 0.35 * rng.standard_normal((6000, DIM)))
    queries = _unit(centres[rng.integers(0, 50, 200)] + 0.35 * rng.standard_normal((200, DIM)))
    ids = np.arange(6000, dtype=np.int64) * 3 + 7
    index = FaissIndex(DIM, "ivfpq")
    index.add(ids, vectors)
    faiss.omp_set_num_threads(before)
    truth = ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :K]]
    return {"ids": ids, "vectors": vectors, "queries": queries, "index": index, "truth": truth}


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t)
                          for f, t in zip(found, truth, strict=True)]))


def test_rescoring_recovers_recall_that_pq_codes_lose(setting: dict) -> None:
    index, queries, ids, vectors = (setting[k] for k in ("index", "queries", "ids", "vectors"))
    assert index.scores_are_estimates and not FaissIndex(DIM, "hnsw").scores_are_estimates
    position = {int(i): n for n, i in enumerate(ids)}
    lookups: list[int] = []

    def vectors_of(found: np.ndarray) -> np.ndarray:
        lookups.append(len(found))
        return vectors[[position[int(i)] for i in found]]

    _, raw = index.search(queries, K)
    _, candidates = index.search(queries, K * RESCORE_FACTOR)
    scores, found = rescore(queries, candidates, vectors_of, K)
    # measured here: raw 0.512, re-scored 0.916 (x2 candidates: 0.737, x8: 0.997)
    assert _recall(raw, setting["truth"]) < 0.6
    assert _recall(found, setting["truth"]) > 0.85
    assert len(lookups) == 1  # one store round trip for the whole batch of queries
    exact = np.einsum("qd,qkd->qk", queries, vectors[[[position[int(i)] for i in row]
                                                      for row in found]])
    np.testing.assert_allclose(scores, exact, rtol=1e-5)  # real inner products, sorted
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_rescoring_pads_missing_candidates() -> None:
    queries = _unit(np.eye(2, 4, dtype=np.float32))
    table = {5: np.array([1, 0, 0, 0], np.float32), 9: np.array([0, 1, 0, 0], np.float32)}
    cand = np.array([[9, 5, -1], [-1, -1, -1]])
    scores, found = rescore(queries, cand, lambda f: np.stack([table[int(i)] for i in f]), 3)
    assert found.tolist() == [[5, 9, -1], [-1, -1, -1]]
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[1]).all()
