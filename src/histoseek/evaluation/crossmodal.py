"""``histoseek eval zeroshot`` and ``histoseek eval crossmodal``: protocols that need an
encoder with both an image and a text tower."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.encoders.registry import create_encoder
from histoseek.errors import InputError, NoTextTowerError
from histoseek.evaluation.bootstrap import (
    balanced_accuracy_on,
    case_bootstrap_ci,
    ci_note,
    mean_on,
)
from histoseek.evaluation.cache import EmbeddingCache, embed_paths, file_tag
from histoseek.evaluation.datasets import load_dataset
from histoseek.evaluation.metrics import classification_metrics, confusion, crossmodal_metrics
from histoseek.evaluation.pictures import confusion_plot, per_class_bars
from histoseek.evaluation.protocols import ClassPrompts, load_class_prompts, zero_shot_predict
from histoseek.evaluation.prototypes import class_prototypes
from histoseek.evaluation.report import write_report
from histoseek.evaluation.retrieval import select_subset


def _two_tower(name: str, device: str) -> Encoder:
    base, _, pretrained = name.partition("@")  # NAME or NAME@WEIGHTS
    encoder = create_encoder(base, pretrained=pretrained or None, device=device)
    if not (encoder.has_images and encoder.has_texts):
        raise NoTextTowerError(
            f"encoder '{name}' does not have both an image and a text tower; zero-shot and "
            "cross-modal evaluation need one that does (e.g. histoseek-base, plip, quiltnet)")
    return encoder


def class_embeddings(encoder: Encoder, prompts: ClassPrompts) -> np.ndarray:
    """One unit vector per class: the normalised mean of its prompts' embeddings."""
    return class_prototypes([encoder.encode_texts(texts) for texts in prompts.prompts.values()])


def evaluate_zeroshot(data: Path, classes: Path | ClassPrompts, encoder_name: str, out: Path,
                      split: Path | None = None, subset: str = "all",
                      cache_dir: Path | None = None, device: str = "cpu",
                      progress: bool = True) -> dict[str, Any]:
    """Classify every image by its nearest class description; no label is used to fit."""
    dataset = select_subset(load_dataset(data), split, subset)
    prompts = classes if isinstance(classes, ClassPrompts) else load_class_prompts(classes)
    unknown = sorted(set(dataset.classes) - set(prompts.classes))
    if unknown:
        raise InputError(f"{prompts.source}: no prompts for class(es) {', '.join(unknown)}")
    encoder = _two_tower(encoder_name, device)
    cache = EmbeddingCache(cache_dir)
    images = embed_paths(encoder, dataset.paths, cache, progress=progress)
    cache.close()
    predicted, sims = zero_shot_predict(images, class_embeddings(encoder, prompts),
                                        prompts.classes)
    metrics = classification_metrics(dataset.labels, predicted, prompts.classes)
    metrics.update(text_to_image_metrics(sims, dataset.labels, prompts.classes))
    result = {**{k: round(v, 4) for k, v in metrics.items()}, "n_queries": len(dataset),
              "dataset": dataset.name, "protocol": "zero-shot from class prompts",
              "encoder_version": encoder.info.version, "prompts": prompts.prompts}
    ci_lines = []
    if dataset.source_ids is not None:
        correct = predicted == dataset.labels
        result["ci95"] = {
            name: [round(v, 4) for v in case_bootstrap_ci(statistic, dataset.source_ids)]
            for name, statistic in (("balanced_accuracy", balanced_accuracy_on(dataset.labels,
                                                                               correct)),
                                    ("accuracy", mean_on(correct)))}
        ci_lines = [ci_note(result["ci95"], dataset.source_ids)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({encoder_name: result}, indent=2))
    matrix, labels = confusion(dataset.labels, predicted, prompts.classes)
    confusion_plot(matrix, list(labels), f"{encoder_name}: zero-shot ({dataset.name})",
                   out / f"confusion_{file_tag(encoder_name)}.png")
    per_class = {c: float(np.mean(predicted[dataset.labels == c] == c))
                 for c in dataset.classes}
    per_class_bars({encoder_name: per_class}, "accuracy", out / "per_class.png")
    with open(out / "predictions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "predicted"])
        writer.writerows(zip(dataset.paths, dataset.labels, predicted, strict=True))
    prompt_lines = [f"- **{c}**: " + " | ".join(t) for c, t in prompts.prompts.items()]
    write_report(out / "report.md", "Zero-shot classification", {encoder_name: result},
                 extra_lines=[f"Data: {dataset.name}, {len(dataset)} images. Prompts from "
                              f"`{prompts.source}`:", *prompt_lines, "", *ci_lines])
    return result


def text_to_image_metrics(sims: np.ndarray, labels: np.ndarray, classes: list[str],
                          k: int = 10) -> dict[str, float]:
    """Each class description as a text query over the images: mean P@k, R@k (hit rate)
    and recall@k (relevant found / min(k, relevant)) over the classes present."""
    p, hit, rec = [], [], []
    for c, name in enumerate(classes):
        n_rel = int((labels == name).sum())
        if n_rel == 0:
            continue
        relevant = labels[np.argsort(-sims[:, c])[:k]] == name
        p.append(relevant.mean())
        hit.append(float(relevant.any()))
        rec.append(relevant.sum() / min(k, n_rel))
    return {f"t2i_P@{k}": float(np.mean(p)), f"t2i_R@{k}": float(np.mean(hit)),
            f"t2i_recall@{k}": float(np.mean(rec))}


def read_pairs(path: Path) -> tuple[list[Path], list[str]]:
    """``image,text`` rows (image paths relative to the CSV)."""
    if not path.is_file():
        raise InputError(f"{path}: no such pairs CSV")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"image", "text"} <= set(reader.fieldnames or []):
            raise InputError(f"{path}: pairs CSV needs columns image,text")
        rows = list(reader)
    images = [(path.parent / r["image"]).resolve() for r in rows]
    texts = [r["text"] for r in rows]
    return images, texts


def evaluate_crossmodal(pairs: Path, encoder_name: str, out: Path,
                        cache_dir: Path | None = None, device: str = "cpu",
                        progress: bool = True) -> dict[str, Any]:
    """Image↔text retrieval on pairs: R@1/5/10 both ways and median rank."""
    images, texts = read_pairs(pairs)
    encoder = _two_tower(encoder_name, device)
    cache = EmbeddingCache(cache_dir)
    image_emb = embed_paths(encoder, images, cache, progress=progress)
    cache.close()
    unique_texts = sorted(set(texts))
    text_emb = encoder.encode_texts(unique_texts)
    text_index = {t: i for i, t in enumerate(unique_texts)}
    positives = [{text_index[t]} for t in texts]
    similarity = image_emb @ text_emb.T
    metrics = crossmodal_metrics(similarity, positives)
    result = {**{k: round(float(v), 4) for k, v in metrics.items()}, "n_queries": len(images),
              "dataset": pairs.name, "protocol": "paired image-text retrieval",
              "encoder_version": encoder.info.version}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({encoder_name: result}, indent=2))
    order = np.argsort(-similarity, axis=1)
    with open(out / "rankings.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "rank", "text", "score", "is_pair"])
        for i, row in enumerate(order):
            for rank, j in enumerate(row[:10], 1):
                writer.writerow([images[i], rank, unique_texts[j], f"{similarity[i, j]:.5f}",
                                 j in positives[i]])
    write_report(out / "report.md", "Cross-modal retrieval", {encoder_name: result},
                 extra_lines=[f"Pairs: `{pairs}` ({len(images)} images, {len(unique_texts)} "
                              "distinct texts)."])
    return result
