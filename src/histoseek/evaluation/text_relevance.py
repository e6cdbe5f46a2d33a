"""Text → report relevance benchmark: load labelled queries, rank reports, score nDCG and R@1.

The benchmark (``tests/data/text_queries``) is a folder with ``reports.csv``
(``report_id,text``) and ``queries.json`` (a list of ``{query_id, type, text, relevant}``).
It exists to measure query handling (expansion, fusion) on wording that differs from the
reports, so every query carries a type: ``exact`` (the phrase is in a relevant report),
``synonym`` (other words for the same diagnosis) or ``abbreviation``.

Queries are split into a development and a test half by a fixed rule (alternating within
each type, in file order) so that a design or weight is chosen on ``dev`` and reported on
``test``. Relevance is binary; everything here is a pure function of vectors and ids.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoseek.errors import InputError

QUERY_TYPES: tuple[str, ...] = ("exact", "synonym", "abbreviation")
SPLITS: tuple[str, ...] = ("dev", "test")

EmbedQuery = Callable[[str], np.ndarray]
"""Text -> ``[1, d]`` (or ``[d]``) unit vector in the space of the report vectors."""


@dataclass(frozen=True)
class TextQuery:
    """One labelled query; ``split`` is assigned by :func:`load_benchmark`."""

    query_id: str
    type: str
    text: str
    relevant: tuple[str, ...]
    split: str = "dev"


@dataclass(frozen=True)
class TextBenchmark:
    """Reports (ids and texts, in file order) and the queries labelled against them."""

    report_ids: tuple[str, ...]
    report_texts: tuple[str, ...]
    queries: tuple[TextQuery, ...]
    source: str = "<memory>"


def load_benchmark(folder: str | Path) -> TextBenchmark:
    """Read ``reports.csv`` and ``queries.json`` from ``folder`` and check them.

    Raises:
        InputError: a file is missing or malformed, an id repeats, a query type is unknown,
            a query has no relevant report or names a report that is not in the corpus.
    """
    folder = Path(folder)
    try:
        with open(folder / "reports.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        raw = json.loads((folder / "queries.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder}: cannot read the text benchmark ({exc})") from exc
    ids = tuple(r["report_id"] for r in rows)
    if len(set(ids)) != len(ids) or not ids:
        raise InputError(f"{folder}/reports.csv: report ids must be unique and non-empty")
    known = set(ids)
    queries = [_parse_query(q, known, folder) for q in raw]
    if len({q.query_id for q in queries}) != len(queries):
        raise InputError(f"{folder}/queries.json: query ids must be unique")
    return TextBenchmark(ids, tuple(r["text"] for r in rows), tuple(assign_splits(queries)),
                         str(folder))


def _parse_query(raw: dict, known: set[str], folder: Path) -> TextQuery:
    query = TextQuery(str(raw["query_id"]), str(raw["type"]), str(raw["text"]),
                      tuple(raw["relevant"]))
    where = f"{folder}/queries.json: {query.query_id}"
    if query.type not in QUERY_TYPES:
        raise InputError(f"{where}: type '{query.type}' is not one of {', '.join(QUERY_TYPES)}")
    if not query.relevant:
        raise InputError(f"{where}: no relevant report")
    missing = sorted(set(query.relevant) - known)
    if missing:
        raise InputError(f"{where}: relevant report(s) {', '.join(missing)} not in the corpus")
    return query


def alternate_splits(types: Sequence[str]) -> list[str]:
    """``dev``/``test`` alternating within each type, in the given order (first is dev).

    A fixed rule, written down before any result was seen, so the halves cannot be picked.
    """
    seen: dict[str, int] = {}
    out = []
    for kind in types:
        out.append(SPLITS[seen.get(kind, 0) % 2])
        seen[kind] = seen.get(kind, 0) + 1
    return out


def assign_splits(queries: Sequence[TextQuery]) -> list[TextQuery]:
    """The queries with ``split`` set by :func:`alternate_splits` over their types."""
    splits = alternate_splits([q.type for q in queries])
    return [TextQuery(q.query_id, q.type, q.text, q.relevant, s)
            for q, s in zip(queries, splits, strict=True)]


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Sequence[Hashable], k: int = 10
              ) -> float:
    """Binary nDCG@k: sum of 1/log2(rank+1) over relevant hits in the top k, divided by the
    same sum for an ideal ranking of min(k, |relevant|) relevant items."""
    wanted = set(relevant)
    if not wanted or k < 1:
        raise InputError("nDCG needs at least one relevant item and k >= 1")
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in wanted)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(wanted))))
    return float(dcg / ideal)


def hit_at_1(ranked: Sequence[str], relevant: Sequence[str]) -> float:
    """R@1 as a top-1 hit rate: 1.0 when the first result is relevant."""
    return float(bool(ranked) and ranked[0] in set(relevant))


def top_k(query_vectors: np.ndarray, item_vectors: np.ndarray, k: int = 10) -> np.ndarray:
    """``[q, k]`` item indices by inner product, best first (ties broken by item order)."""
    scores = np.asarray(query_vectors, np.float32) @ np.asarray(item_vectors, np.float32).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def rank_items(embed_query: EmbedQuery, texts: Sequence[str], item_vectors: np.ndarray,
               item_ids: Sequence[str], k: int = 10) -> list[list[str]]:
    """Top-k item ids per query text by inner product."""
    queries = np.concatenate([np.asarray(embed_query(t), np.float32).reshape(1, -1)
                              for t in texts])
    return [[item_ids[j] for j in row] for row in top_k(queries, item_vectors, k)]


def per_query_scores(benchmark: TextBenchmark, embed_query: EmbedQuery,
                     report_vectors: np.ndarray, k: int = 10) -> list[dict[str, float | str]]:
    """One row per query: id, type, split, ``nDCG@k`` and ``R@1``."""
    ranked = rank_items(embed_query, [q.text for q in benchmark.queries], report_vectors,
                        benchmark.report_ids, k)
    return [{"query_id": q.query_id, "type": q.type, "split": q.split,
             f"nDCG@{k}": ndcg_at_k(r, q.relevant, k), "R@1": hit_at_1(r, q.relevant)}
            for q, r in zip(benchmark.queries, ranked, strict=True)]


def summarise(rows: Sequence[dict[str, float | str]], group: str = "type",
              metrics: Sequence[str] = ("nDCG@10", "R@1")) -> dict[str, dict[str, float]]:
    """Mean of each metric per value of ``group`` and over all rows (key ``all``)."""
    keys = [*dict.fromkeys(str(r[group]) for r in rows), "all"]
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        part = [r for r in rows if key == "all" or r[group] == key]
        out[key] = {m: round(float(np.mean([float(r[m]) for r in part])), 4) for m in metrics}
        out[key]["n"] = len(part)
    return out


def label_ranking_scores(query_vectors: np.ndarray, query_labels: Sequence[str],
                         item_vectors: np.ndarray, item_labels: Sequence[str],
                         k: int = 10) -> list[dict[str, float]]:
    """Per query (e.g. a class prompt against labelled tiles): ``P@k`` (share of the top k
    with the query's label) and binary ``nDCG@k`` (ideal: min(k, items with the label))."""
    labels = np.asarray(item_labels)
    out = []
    for label, row in zip(query_labels, top_k(query_vectors, item_vectors, k), strict=True):
        relevant = [int(i) for i in np.flatnonzero(labels == label)]
        out.append({f"P@{k}": float(np.mean(labels[row] == label)),
                    f"nDCG@{k}": ndcg_at_k([int(i) for i in row], relevant, k)})
    return out


def memoised(encode_texts: Callable[[list[str]], np.ndarray]
             ) -> Callable[[list[str]], np.ndarray]:
    """Wrap a text tower so each distinct text is encoded once (a weight grid re-uses texts)."""
    seen: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in seen))
        if todo:
            seen.update(zip(todo, np.asarray(encode_texts(todo), np.float32), strict=True))
        return np.stack([seen[t] for t in texts])

    return encode


def evaluate_text_queries(benchmark: TextBenchmark, embed_query: EmbedQuery,
                          report_vectors: np.ndarray, k: int = 10
                          ) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics by query type for all queries and for each split: ``{all|dev|test: {type: …}}``."""
    rows = per_query_scores(benchmark, embed_query, report_vectors, k)
    metrics = (f"nDCG@{k}", "R@1")
    out = {"all": summarise(rows, "type", metrics)}
    for split in SPLITS:
        out[split] = summarise([r for r in rows if r["split"] == split], "type", metrics)
    return out
