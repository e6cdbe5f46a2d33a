"""Evaluation protocols: leave-one-source-out retrieval, source-grouped splits, zero-shot
classification from class descriptions, and cross-modal retrieval on pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoseek.errors import InputError
from histoseek.evaluation.datasets import Dataset


@dataclass(frozen=True)
class Ranking:
    """Ranked neighbours per query: ``indices`` ``[q, k]`` into the gallery, ``-1`` padded.

    ``n_eligible_relevant`` counts, per query, gallery items sharing its label that the
    protocol allowed (not itself, not its own source) — the denominator of mAP@K.
    """

    indices: np.ndarray
    scores: np.ndarray
    n_eligible_relevant: np.ndarray


def rank_neighbours(embeddings: np.ndarray, labels: np.ndarray, k: int,
                    groups: np.ndarray | None = None, chunk: int = 1024) -> Ranking:
    """Exact top-``k`` neighbours of every item among the others (cosine on unit vectors).

    With ``groups`` (source ids), items of the query's own group are never neighbours: a
    query never matches its own patient, slide or source image.
    """
    emb = np.ascontiguousarray(embeddings, np.float32)
    n = len(emb)
    k = min(k, n - 1)
    if k < 1:
        raise InputError("retrieval needs at least two items")
    indices = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), -np.inf, np.float32)
    n_relevant = np.zeros(n, np.int64)
    _, label_codes = np.unique(labels, return_inverse=True)
    group_codes = None if groups is None else np.unique(groups, return_inverse=True)[1]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = emb[start:stop] @ emb.T
        rows = np.arange(stop - start)
        excluded = np.zeros_like(sim, dtype=bool)
        excluded[rows, rows + start] = True
        if group_codes is not None:
            excluded |= group_codes[start:stop, None] == group_codes[None, :]
        sim[excluded] = -np.inf
        same_label = label_codes[start:stop, None] == label_codes[None, :]
        n_relevant[start:stop] = (same_label & ~excluded).sum(axis=1)
        top = np.argpartition(-sim, kth=min(k, n - 1) - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        valid = np.isfinite(top_scores)
        indices[start:stop] = np.where(valid, top, -1)
        scores[start:stop] = np.where(valid, top_scores, -np.inf)
    return Ranking(indices, scores, n_relevant)


def neighbour_labels(ranking: Ranking, labels: np.ndarray) -> list[list[str]]:
    """Ranked neighbour labels per query (padding dropped)."""
    return [[str(labels[j]) for j in row if j >= 0] for row in ranking.indices]


@dataclass(frozen=True)
class Split:
    train_sources: tuple[str, ...]
    test_sources: tuple[str, ...]
    seed: int
    test_fraction: float

    def indices(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        if dataset.source_ids is None:
            raise InputError(f"{dataset.name}: a split by source needs source ids")
        test = np.isin(dataset.source_ids, list(self.test_sources))
        return np.flatnonzero(~test), np.flatnonzero(test)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "seed": self.seed, "test_fraction": self.test_fraction,
            "train_sources": list(self.train_sources), "test_sources": list(self.test_sources),
        }, indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Split:
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["train_sources"]), tuple(data["test_sources"]), int(data["seed"]),
                   float(data["test_fraction"]))


def split_by_source(dataset: Dataset, test_fraction: float = 0.3, seed: int = 0) -> Split:
    """Seeded split of *sources* (never tiles), stratified by label as far as groups allow.

    Uses scikit-learn's ``StratifiedGroupKFold`` and takes one fold as the test set, so every
    class with enough sources appears in both parts and no source straddles them.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if dataset.source_ids is None:
        raise InputError(f"{dataset.name}: no source ids, so no split by source is possible")
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    n_splits = max(2, round(1.0 / test_fraction))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, test_idx = next(folds.split(np.zeros(len(dataset)), dataset.labels, dataset.source_ids))
    test_sources = sorted(set(dataset.source_ids[test_idx].tolist()))
    train_sources = sorted(set(dataset.source_ids.tolist()) - set(test_sources))
    return Split(tuple(train_sources), tuple(test_sources), seed, test_fraction)


@dataclass(frozen=True)
class ClassPrompts:
    """Class name → the texts that describe it, plus the templates used to make them."""

    prompts: dict[str, list[str]]
    templates: list[str]
    source: str

    @property
    def classes(self) -> list[str]:
        return list(self.prompts)


def load_class_prompts(path: Path) -> ClassPrompts:
    """Read a JSON/YAML file ``{"templates": [...], "classes": {name: [descriptions]}}``.

    Each description is used as is and also put through every template containing ``{}``.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read class prompts ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise InputError(f"{path}: expected a mapping with a 'classes' mapping")
    templates = [str(t) for t in data.get("templates", ["{}"])]
    prompts: dict[str, list[str]] = {}
    for name, descriptions in data["classes"].items():
        descriptions = [descriptions] if isinstance(descriptions, str) else list(descriptions or [])
        texts = []
        for description in descriptions or [str(name).replace("_", " ")]:
            texts.extend(t.format(description) for t in templates)
        prompts[str(name)] = texts
    return ClassPrompts(prompts, templates, str(path))


def zero_shot_predict(image_embeddings: np.ndarray, class_embeddings: np.ndarray,
                      classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class per image (argmax cosine) and the ``[n, c]`` similarity matrix."""
    sims = image_embeddings @ class_embeddings.T
    return np.array(classes)[sims.argmax(axis=1)], sims
