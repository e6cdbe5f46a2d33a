"""Zero-shot slide subtyping: class descriptions from the knowledge tree against every tile.

Each class is a set of prompts (``knowledge.zero_shot_classes``: names, synonyms and
attribute sentences under templates) embedded by the image encoder's text tower and
averaged into one unit vector (KEP). Each tile is scored against each class; a slide's
score for a class is the mean of its ``top_k`` best tiles for that class (MI-Zero's top-K
pooling: a subtype shows in some of the tissue, not in the mean of all of it). A softmax
over the pooled scores at ``TEMPERATURE`` gives one probability per class; when the best
class is not ahead of the second by ``min_margin``, the answer is "abstain", with the
margin shown, rather than a confident-looking guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.errors import InputError

TEMPERATURE = 0.02  # cosine gaps of a few hundredths between classes become clear odds
TOP_K = 10
MIN_MARGIN = 0.1


@dataclass(frozen=True)
class DrivingTile:
    """A tile that carried the decision: its level-0 box and similarity to the class."""

    box: tuple[int, int, int, int]
    score: float
    tile_id: int | None = None


@dataclass(frozen=True)
class SlideClassification:
    """Probabilities per class (best first), the decision or abstention, and its evidence."""

    path: str
    probabilities: dict[str, float]
    pooled: dict[str, float]
    margin: float
    min_margin: float
    n_tiles: int
    mpp: float | None
    driving_tiles: tuple[DrivingTile, ...] = ()
    tile_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64),
                                   repr=False)
    tile_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32),
                                    repr=False)

    @property
    def top_class(self) -> str:
        return next(iter(self.probabilities))

    @property
    def abstained(self) -> bool:
        return self.margin < self.min_margin

    @property
    def predicted(self) -> str | None:
        """The best class, or None when it is not ahead by ``min_margin``."""
        return None if self.abstained else self.top_class

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "predicted": self.predicted, "top_class": self.top_class,
                "abstained": self.abstained, "margin": round(self.margin, 4),
                "min_margin": self.min_margin, "n_tiles": self.n_tiles, "mpp": self.mpp,
                "probabilities": {c: round(p, 4) for c, p in self.probabilities.items()},
                "pooled_similarity": {c: round(s, 4) for c, s in self.pooled.items()},
                "driving_tiles": [{"x": t.box[0], "y": t.box[1], "w": t.box[2],
                                   "h": t.box[3], "score": round(t.score, 4),
                                   "tile_id": t.tile_id} for t in self.driving_tiles]}


def class_vectors(encoder: Encoder, prompts: Mapping[str, list[str]]) -> np.ndarray:
    """One unit vector per class: the normalised mean of its prompts' text embeddings."""
    rows = []
    for name, texts in prompts.items():
        if not texts:
            raise InputError(f"class '{name}' has no prompts")
        mean = encoder.encode_texts(list(texts)).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.asarray(rows, np.float32)


def resolve_classes(classes: str | Path | Iterable[str] | None,
                    default: Iterable[str]) -> dict[str, list[str]]:
    """Class → prompts from a YAML/JSON prompts file, comma-separated names or a list of
    knowledge-tree entities (ids, names or synonyms), or ``default`` entities."""
    from histoseek.evaluation.protocols import load_class_prompts
    from histoseek.knowledge import default_tree, zero_shot_classes

    if classes is None:
        names: list[str] = list(default)
    elif isinstance(classes, Path) or (isinstance(classes, str) and (
            Path(classes).suffix.lower() in (".yaml", ".yml", ".json")
            or Path(classes).is_file())):
        if not Path(classes).is_file():
            raise InputError(f"{classes}: no such class prompts file")
        prompts = load_class_prompts(Path(classes)).prompts
        if len(prompts) < 2:
            raise InputError(f"{classes}: zero-shot classification needs at least two classes, "
                             f"the file has {list(prompts)}")
        return prompts
    elif isinstance(classes, str):
        names = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        names = list(classes)
    if len(names) < 2:
        raise InputError(f"zero-shot classification needs at least two classes, got {names}")
    return zero_shot_classes(default_tree(), names)


def classify_tiles(path: str, vectors: np.ndarray, boxes: np.ndarray,
                   classes: Mapping[str, np.ndarray] | tuple[list[str], np.ndarray],
                   mpp: float | None = None, top_k: int = TOP_K,
                   min_margin: float = MIN_MARGIN, tile_ids: np.ndarray | None = None,
                   n_driving: int = 5) -> SlideClassification:
    """Pool each class's ``top_k`` tile similarities into probabilities (see module doc)."""
    names, class_matrix = classes if isinstance(classes, tuple) else (
        list(classes), np.vstack(list(classes.values())))
    if len(vectors) == 0:
        raise InputError(f"{path}: no tissue tiles to classify")
    if top_k < 1:
        raise InputError(f"top_k must be at least 1 (tiles pooled per class), got {top_k}")
    sims = vectors @ class_matrix.T  # [tiles, classes]
    k = min(top_k, len(vectors))
    pooled = np.sort(sims, axis=0)[-k:].mean(axis=0)
    logits = pooled / TEMPERATURE
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    best = int(order[0])
    margin = float(probs[order[0]] - probs[order[1]]) if len(order) > 1 else 1.0
    driving = np.argsort(-sims[:, best])[:n_driving]
    return SlideClassification(
        path=path, probabilities={names[i]: float(probs[i]) for i in order},
        pooled={names[i]: float(pooled[i]) for i in order}, margin=margin,
        min_margin=min_margin, n_tiles=len(vectors), mpp=mpp,
        driving_tiles=tuple(DrivingTile(tuple(int(v) for v in boxes[i]), float(sims[i, best]),
                                        None if tile_ids is None else int(tile_ids[i]))
                            for i in driving),
        tile_boxes=np.asarray(boxes), tile_scores=sims[:, best].astype(np.float32))


def classify_slide_file(path: str | Path, encoder: Encoder, tiling: Any,
                        classes: Mapping[str, list[str]], mpp: float | None = None,
                        max_tiles: int = 2000, progress: bool = True,
                        **pooling: Any) -> SlideClassification:
    """Tile ``path`` at the library scale (up to ``max_tiles`` tiles, spread evenly), encode,
    and classify; for slides that are not in a library."""
    from tqdm.auto import tqdm

    from histoseek.search.queries import slide_tiles

    vectors_of = class_vectors(encoder, classes)
    boxes, pixels = slide_tiles(path, tiling, mpp, max_tiles)
    chunks = range(0, len(pixels), 64)
    vectors = np.concatenate([encoder.encode_images(pixels[i : i + 64]) for i in tqdm(
        chunks, desc=f"encoding {Path(path).name}", unit="batch", disable=not progress,
        leave=False)])
    return classify_tiles(str(path), vectors, boxes, (list(classes), vectors_of),
                          mpp=tiling.target_mpp, **pooling)


class SlideClassifier:
    """``Library.classify``: stored tile vectors for an indexed slide (no pixels read), else
    tiles and encodes the file; each set of class prompts is embedded once."""

    def __init__(self, store: Any, tiling: Any, dim: int, encoder: Any) -> None:
        self.store, self.tiling, self.dim, self.encoder = store, tiling, dim, encoder
        self._class_vectors: dict[tuple[Any, ...], np.ndarray] = {}

    def __call__(self, slide: str | Path, classes: str | Path | list[str] | None = None,
                 mpp: float | None = None, top_k: int = TOP_K, min_margin: float = MIN_MARGIN,
                 max_tiles: int = 2000, progress: bool = True) -> SlideClassification:
        from histoseek.knowledge.tree import EBHI_SEG_CLASSES

        prompts = resolve_classes(classes, EBHI_SEG_CLASSES)
        encoder = self.encoder()
        own = self.store.source_by_path(slide)
        if own is None:
            return classify_slide_file(slide, encoder, self.tiling, prompts, mpp, max_tiles,
                                       progress, top_k=top_k, min_margin=min_margin)
        key = tuple((name, tuple(texts)) for name, texts in prompts.items())
        if key not in self._class_vectors:
            self._class_vectors[key] = class_vectors(encoder, prompts)
        ids, boxes = self.store.source_tiles(own)
        return classify_tiles(str(slide), self.store.vectors_for("image", ids, self.dim), boxes,
                              (list(prompts), self._class_vectors[key]),
                              mpp=self.tiling.target_mpp, top_k=top_k, min_margin=min_margin,
                              tile_ids=ids)
