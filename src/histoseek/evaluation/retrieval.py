"""``histoseek eval retrieval``: leave-one-source-out image retrieval for several encoders.

Writes ``metrics.json``, ``report.md``, ``rankings.csv`` and pictures (per-class bars, the
confusion matrix of the top-K majority vote, the worst-ranked queries with their hits).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoseek.errors import InputError
from histoseek.evaluation.bootstrap import case_bootstrap_ci, ci_note, mean_on
from histoseek.evaluation.cache import (
    EmbeddingCache,
    embed_paths,
    encoder_from_spec,
    file_tag,
)
from histoseek.evaluation.datasets import Dataset, load_dataset
from histoseek.evaluation.metrics import (
    confusion,
    majority_vote_labels,
    precision_at_k,
    retrieval_metrics,
)
from histoseek.evaluation.pictures import confusion_plot, per_class_bars
from histoseek.evaluation.protocols import Ranking, Split, neighbour_labels, rank_neighbours
from histoseek.evaluation.report import write_report
from histoseek.search.queries import query_tile
from histoseek.viz.grid import GridCell, render_grid


@dataclass(frozen=True)
class RetrievalSetup:
    data: Path
    encoders: tuple[str, ...]
    out: Path
    ks: tuple[int, ...] = (1, 5, 10)
    exclude_same: str | None = "source_id"
    split: Path | None = None
    subset: str = "all"
    cache_dir: Path | None = None
    device: str = "cpu"
    progress: bool = True


def _groups(dataset: Dataset, exclude_same: str | None) -> tuple[np.ndarray | None, str]:
    if exclude_same is None:
        return None, "all other images (no source exclusion)"
    if exclude_same == "source_id":
        if dataset.source_ids is None:
            return None, ("NO source ids in this data set: neighbours may come from the query's "
                          "own source, so figures are optimistic")
        return dataset.source_ids, "leave-one-source-out (source_id)"
    if exclude_same in dataset.extra:
        return dataset.extra[exclude_same], f"leave-one-{exclude_same}-out"
    raise InputError(f"{dataset.name}: column '{exclude_same}' is not in the data set; "
                     f"--exclude-same takes source_id or one of {sorted(dataset.extra)}")


def select_subset(dataset: Dataset, split: Path | None, subset: str) -> Dataset:
    """The whole data set, or the train/test part of a saved source split."""
    if split is None or subset == "all":
        return dataset
    train, test = Split.load(split).indices(dataset)
    return dataset.subset(test if subset == "test" else train, f"{dataset.name}:{subset}")


def evaluate_retrieval(setup: RetrievalSetup) -> dict[str, dict[str, Any]]:
    """Run the protocol for every encoder and write the outputs; return metrics by encoder."""
    dataset = select_subset(load_dataset(setup.data), setup.split, setup.subset)
    groups, protocol = _groups(dataset, setup.exclude_same)
    setup.out.mkdir(parents=True, exist_ok=True)
    cache = EmbeddingCache(setup.cache_dir)
    k_max = max(setup.ks)
    results: dict[str, dict[str, Any]] = {}
    per_class: dict[str, dict[str, float]] = {}
    rankings_rows: list[list[Any]] = []
    ci_lines: list[str] = []
    for name in setup.encoders:
        encoder = encoder_from_spec(name, setup.device)
        started = time.perf_counter()
        emb = embed_paths(encoder, dataset.paths, cache, progress=setup.progress)
        ranking = rank_neighbours(emb, dataset.labels, k_max, groups)
        ranked = neighbour_labels(ranking, dataset.labels)
        metrics = retrieval_metrics(dataset.labels, ranked, setup.ks, ranking.n_eligible_relevant)
        results[name] = {
            **{k: round(v, 4) for k, v in metrics.items()},
            "n_queries": len(dataset), "dataset": dataset.name, "protocol": protocol,
            "encoder_version": encoder.info.version, "seconds": round(
                time.perf_counter() - started, 1),
        }
        k_cls = 5 if 5 in setup.ks else setup.ks[0]
        per_class[name] = {
            c: precision_at_k(dataset.labels[m], [ranked[i] for i in np.flatnonzero(m)], k_cls)
            for c in dataset.classes if (m := dataset.labels == c).any()}
        predicted = np.array([p if p is not None else "(none)"
                              for p in majority_vote_labels(ranked, k_cls)])
        if dataset.source_ids is not None:
            results[name]["ci95"] = _case_intervals(dataset, ranked, predicted, k_cls)
            ci_lines.append(ci_note(results[name]["ci95"], dataset.source_ids, f"{name}: "))
        classes = dataset.classes + (["(none)"] if "(none)" in predicted else [])
        matrix, labels = confusion(dataset.labels, predicted, classes)
        tag = file_tag(name)
        confusion_plot(matrix, list(labels), f"{name}: top-{k_cls} majority vote ({protocol})",
                       setup.out / f"confusion_{tag}.png")
        _worst_queries(dataset, ranking, ranked, k_cls, setup.out / f"worst_{tag}.png", name)
        rankings_rows.extend(_ranking_rows(name, dataset, ranking))
    per_class_bars(per_class, "P@5", setup.out / "per_class.png")
    (setup.out / "metrics.json").write_text(json.dumps(results, indent=2))
    with open(setup.out / "rankings.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["encoder", "query_id", "rank", "neighbour_id", "score", "query_label",
                         "neighbour_label"])
        writer.writerows(rankings_rows)
    write_report(setup.out / "report.md", "Image retrieval", results, extra_lines=[
        f"Data: `{setup.data}` ({dataset.name}, {len(dataset)} images, "
        f"{len(dataset.classes)} classes). Protocol: {protocol}.",
        "R@K: top-K hit rate; P@K: precision; mMV@K: majority vote; mAP@K: AP normalised by "
        "min(K, relevant eligible items); MRR over the top K.", "", *ci_lines,
    ])
    cache.close()
    return results


def _case_intervals(dataset: Dataset, ranked: list[list[str]], voted_labels: np.ndarray,
                    k: int) -> dict[str, list[float]]:
    """Case-bootstrap 95% intervals of R@1 and mMV@k (neighbours and votes kept as ranked)."""
    top1 = np.array([bool(row) and row[0] == label
                     for row, label in zip(ranked, dataset.labels, strict=True)])
    voted = voted_labels == dataset.labels
    return {name: [round(v, 4) for v in case_bootstrap_ci(mean_on(hits), dataset.source_ids)]
            for name, hits in (("R@1", top1), (f"mMV@{k}", voted))}


def _ranking_rows(name: str, dataset: Dataset, ranking: Ranking) -> list[list[Any]]:
    ids = [str(p.relative_to(dataset.root)) if p.is_relative_to(dataset.root) else str(p)
           for p in dataset.paths]
    rows = []
    for q, (idx_row, score_row) in enumerate(zip(ranking.indices, ranking.scores, strict=True)):
        for rank, (j, s) in enumerate(zip(idx_row, score_row, strict=True), 1):
            if j >= 0:
                rows.append([name, ids[q], rank, ids[j], f"{s:.5f}", dataset.labels[q],
                             dataset.labels[j]])
    return rows


def _worst_queries(dataset: Dataset, ranking: Ranking, ranked: list[list[str]], k: int,
                   out: Path, name: str, n: int = 6) -> None:
    hits = np.array([sum(lab == dataset.labels[q] for lab in ranked[q][:k])
                     for q in range(len(dataset))])
    order = np.lexsort((ranking.scores[:, 0] * -1, hits))[:n]  # fewest hits, most confident
    rows = []
    for q in order:
        query = GridCell(query_tile(dataset.paths[q], 160)[0], f"{dataset.labels[q]}")
        cells = [GridCell(query_tile(dataset.paths[j], 160)[0],
                          f"{dataset.labels[j]}\n{ranking.scores[q, r]:.3f}",
                          bool(dataset.labels[j] == dataset.labels[q]))
                 for r, j in enumerate(ranking.indices[q][:k]) if j >= 0]
        rows.append((query, cells))
    render_grid(rows, out,
                title=f"{name}: worst-ranked queries (fewest same-class hits in top {k})")
