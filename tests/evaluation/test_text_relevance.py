"""Text → report relevance benchmark: metrics on hand-made rankings, the data's integrity, and
the real benchmark (minilm) guarding the fused expansion against a regression."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from histoseek.evaluation import text_relevance as tr
from histoseek.knowledge.tree import normalise

DATA = Path(__file__).resolve().parents[1] / "data" / "text_queries"


def test_ndcg_and_hit_at_1_on_a_hand_made_ranking() -> None:
    ranked = ["a", "b", "c"]
    # one relevant hit at rank 2 out of two relevant items: (1/log2 3) / (1 + 1/log2 3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert tr.ndcg_at_k(ranked, ["b", "d"], 10) == pytest.approx(expected)
    assert tr.hit_at_1(ranked, ["b", "d"]) == 0.0
    assert tr.ndcg_at_k(ranked, ["a", "b"], 10) == pytest.approx(1.0)
    assert tr.hit_at_1(ranked, ["a"]) == 1.0
    assert tr.ndcg_at_k(ranked, ["z"], 10) == 0.0
    assert tr.ndcg_at_k(ranked, ["c"], 2) == 0.0  # beyond the cut-off


def test_rank_items_and_summaries() -> None:
    items = np.eye(3, dtype=np.float32)
    embed = {"x": np.array([0.1, 0.9, 0.0]), "y": np.array([1.0, 0.0, 0.2])}.__getitem__
    assert tr.rank_items(embed, ["x", "y"], items, ["i0", "i1", "i2"], k=2) == [
        ["i1", "i0"], ["i0", "i2"]]
    rows = [{"type": "exact", "nDCG@10": 1.0, "R@1": 1.0},
            {"type": "synonym", "nDCG@10": 0.5, "R@1": 0.0}]
    summary = tr.summarise(rows)
    assert summary["all"] == {"nDCG@10": 0.75, "R@1": 0.5, "n": 2}
    assert summary["synonym"]["nDCG@10"] == 0.5


def test_label_ranking_scores_counts_precision_and_ndcg() -> None:
    items = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.2, 0.8]], np.float32)
    rows = tr.label_ranking_scores(np.array([[1, 0]], np.float32), ["a"], items,
                                   ["a", "b", "a", "b"], k=2)
    # ranked: item0 (a), item1 (b) -> P@2 0.5; nDCG: 1 / (1 + 1/log2 3)
    assert rows[0]["P@2"] == 0.5
    assert rows[0]["nDCG@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_splits_alternate_within_each_type() -> None:
    assert tr.alternate_splits(["a", "a", "b", "a", "b"]) == ["dev", "test", "dev", "dev",
                                                             "test"]


@pytest.fixture(scope="module")
def bench() -> tr.TextBenchmark:
    return tr.load_benchmark(DATA)


def test_benchmark_loads_and_is_consistent(bench: tr.TextBenchmark) -> None:
    assert 40 <= len(bench.report_ids) <= 80
    assert len(bench.queries) >= 30
    assert {q.type for q in bench.queries} == set(tr.QUERY_TYPES)
    known = set(bench.report_ids)
    assert all(q.relevant and set(q.relevant) <= known for q in bench.queries)
    assert {q.split for q in bench.queries} == {"dev", "test"}


def test_query_types_match_their_definitions(bench: tr.TextBenchmark) -> None:
    text_of = dict(zip(bench.report_ids, bench.report_texts, strict=True))
    for q in bench.queries:
        found = [normalise(q.text) in normalise(text_of[r]) for r in q.relevant]
        if q.type == "exact":
            assert any(found), f"{q.query_id}: exact phrase is in no relevant report"
        elif q.type == "synonym":
            assert not any(found), f"{q.query_id}: a synonym query is verbatim in a report"
        else:
            assert re.search(r"\b[A-Z][A-Za-z0-9/]*[A-Z0-9]\b", q.text), q.query_id


@pytest.mark.slow
def test_fused_expansion_never_loses_to_no_expansion_on_the_benchmark(
        bench: tr.TextBenchmark) -> None:
    """Real minilm rankings: the fused expansion is at least as good as none on every query
    type (nDCG@10), and beats the old concatenation on exact phrases (the issue)."""
    from histoseek.encoders.registry import create_encoder
    from histoseek.knowledge.tree import expand_query, expansion_texts
    from histoseek.search.text_query import embed_text_query

    encode = tr.memoised(create_encoder("minilm").encode_texts)
    reports = encode(list(bench.report_texts))
    texts = [q.text for q in bench.queries]
    encode([*texts, *(e for t in texts for e in expansion_texts(t)),
            *(expand_query(t) for t in texts)])  # one batch: per-call overhead dominates

    def score(embed: tr.EmbedQuery) -> dict[str, dict[str, float]]:
        return tr.evaluate_text_queries(bench, embed, reports)["all"]

    none = score(lambda t: embed_text_query(encode, t, expand=False))
    fused = score(lambda t: embed_text_query(encode, t, expand=True))
    concat = score(lambda t: encode([expand_query(t)]))
    for kind in tr.QUERY_TYPES:  # the rule: no query type loses, on either metric
        assert fused[kind]["nDCG@10"] >= none[kind]["nDCG@10"] - 1e-3, (kind, fused, none)
        assert fused[kind]["R@1"] >= none[kind]["R@1"], (kind, fused, none)
    assert fused["all"]["nDCG@10"] > none["all"]["nDCG@10"]
    assert fused["exact"]["nDCG@10"] > concat["exact"]["nDCG@10"] + 0.05
