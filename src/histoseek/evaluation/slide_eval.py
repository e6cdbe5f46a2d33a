"""Slide-level evaluation on synthetic slides with known regions (``synthetic_slides``).

Three measures, each leave-one-source-out (a hit made of the query's own EBHI source, the
same patient's tiles, is not counted as found):

- **region localisation**: every region of every slide is a region query
  (``level='region'``); the first hit not drawn from the query's source must overlap
  (IoU ≥ 0.5) a region of the query's class: the hit rate, and the mean IoU;
- **slide retrieval**: every slide is a slide query (two stages, ``search.slide_search``);
  mMV@5 by dominant class, hits sharing the query's dominant source left out;
- **zero-shot slide subtyping** (``search.classify``): balanced accuracy of the top class
  against the dominant class, with the abstention rate and the accuracy when not
  abstaining.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from histoseek.evaluation.metrics import majority_vote_at_k
from histoseek.evaluation.synthetic_slides import SyntheticSlide, box_iou, load_truth
from histoseek.library import Library

IOU_HIT = 0.5


def index_synthetic(truth: Path, library: Path, encoder: str | None = None,
                    pretrained: str | None = None) -> tuple[Library, list[SyntheticSlide]]:
    """Index the slides of ``truth`` (resumable), labelled by dominant class and source."""
    slides = load_truth(truth)
    labels = library.parent / f"{library.name}-labels.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "source_id", "slide_id"])
        for s in slides:
            writer.writerow([s.path.resolve(), s.dominant_label, _dominant_source(s), s.slide_id])
    lib = Library.open_or_create(library, encoder=encoder, pretrained=pretrained)
    lib.add([s.path for s in slides], labels=labels)
    return lib, slides


def localisation(lib: Library, slides: list[SyntheticSlide], k: int = 10,
                 max_queries: int | None = None) -> dict[str, Any]:
    """Region → locations hit rate: see the module docstring."""
    by_path = {str(s.path.resolve()): s for s in slides}
    queries = [(s, r) for s in slides for r in s.regions][:max_queries]
    hits_found, ious, seconds = [], [], []
    for slide, region in tqdm(queries, desc="region queries", unit="query", leave=False):
        started = time.perf_counter()
        hits = lib.search(region=(slide.path, *region.box), level="region", k=k)
        seconds.append(time.perf_counter() - started)
        first = None
        for hit in hits:
            truth = by_path.get(str(Path(hit.path or "").resolve()))
            if truth is None or hit.x is None:
                continue
            box = (hit.x, hit.y, hit.w, hit.h)
            best = max(truth.regions, key=lambda r: box_iou(box, r.box))
            if box_iou(box, best.box) > 0 and best.source_id == region.source_id:
                continue  # the query's own source: leave one source out
            first = (box, truth)
            break
        if first is None:
            hits_found.append(False)
            ious.append(0.0)
            continue
        box, truth = first
        same_class = [box_iou(box, r.box) for r in truth.regions if r.label == region.label]
        iou = max(same_class, default=0.0)
        hits_found.append(iou >= IOU_HIT)
        ious.append(iou)
    return {"queries": len(queries), "hit_rate": float(np.mean(hits_found)),
            "mean_iou": float(np.mean(ious)),
            "seconds_per_query": float(np.median(seconds))}


def slide_retrieval(lib: Library, slides: list[SyntheticSlide], k: int = 5,
                    slide_codes: str = "float") -> dict[str, Any]:
    """mMV@k of slide → slides by dominant class (two-stage search)."""
    labels_of = {str(s.path.resolve()): s.dominant_label for s in slides}
    query_labels, neighbours, seconds = [], [], []
    for slide in tqdm(slides, desc="slide queries", unit="query", leave=False):
        started = time.perf_counter()
        hits = lib.search(slide=slide.path, target="slides", k=k,
                          exclude={"source_id": _dominant_source(slide)},
                          slide_codes=slide_codes)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - started)
        query_labels.append(slide.dominant_label)
        neighbours.append([labels_of.get(str(Path(h.path or "").resolve()), "?") for h in hits])
    return {"queries": len(slides), f"mMV@{k}": majority_vote_at_k(
        np.asarray(query_labels), neighbours, k),
        "top1_accuracy": float(np.mean([bool(n) and n[0] == q
                                        for q, n in zip(query_labels, neighbours, strict=True)])),
        "seconds_per_query": float(np.median(seconds))}


def zero_shot_slides(lib: Library, slides: list[SyntheticSlide], classes: Any = None,
                     top_k: int | None = None, min_margin: float | None = None
                     ) -> dict[str, Any]:
    """Balanced accuracy of zero-shot subtyping by dominant class (see module docstring)."""
    options = {k: v for k, v in (("top_k", top_k), ("min_margin", min_margin)) if v is not None}
    truth, top, abstained = [], [], []
    for slide in tqdm(slides, desc="classify", unit="slide", leave=False):
        result = lib.classify(slide.path, classes=classes, progress=False, **options)
        truth.append(slide.dominant_label)
        top.append(result.top_class)
        abstained.append(result.abstained)
    truth_a, top_a, kept = np.asarray(truth), np.asarray(top), ~np.asarray(abstained)
    per_class = {c: float(np.mean(top_a[truth_a == c] == c)) for c in sorted(set(truth))}
    return {"slides": len(slides), "balanced_accuracy": float(np.mean(list(per_class.values()))),
            "per_class_accuracy": per_class,
            "abstention_rate": float(np.mean(abstained)),
            "accuracy_when_not_abstaining": float(np.mean(top_a[kept] == truth_a[kept]))
            if kept.any() else None}


def _dominant_source(slide: SyntheticSlide) -> str:
    """The source of the dominant class's largest region (the slide's 'case')."""
    areas: dict[str, int] = defaultdict(int)
    for region in slide.regions:
        if region.label == slide.dominant_label:
            areas[region.source_id] += region.area
    return max(areas, key=lambda s: areas[s])
