"""Per-epoch validation on held-out *training* sources: retrieval and zero-shot."""

from __future__ import annotations

import numpy as np
import torch

from histoseek.encoders.base import Preprocess
from histoseek.encoders.torch_tower import embed_tiles as torch_embed_tiles
from histoseek.evaluation.metrics import classification_metrics, majority_vote_at_k
from histoseek.evaluation.protocols import neighbour_labels, rank_neighbours
from histoseek.evaluation.prototypes import class_prototypes


def embed_tiles(model: torch.nn.Module, tiles: np.ndarray,
                pre: tuple[int, tuple[float, ...], tuple[float, ...]], device: torch.device,
                batch: int = 128) -> np.ndarray:
    """A model's image vectors through the encoders' own path (``torch_tower.embed_tiles``),
    so validation scores exactly what a library will store."""
    input_px, mean, std = pre
    return torch_embed_tiles(model.encode_image, tiles, Preprocess(input_px, mean, std), device,
                             batch_size=batch)  # type: ignore[arg-type]


@torch.inference_mode()
def validation_scores(model: torch.nn.Module, tiles: np.ndarray, labels: np.ndarray,
                      patients: np.ndarray, text: dict[str, torch.Tensor],
                      pre: tuple[int, tuple[float, ...], tuple[float, ...]],
                      device: torch.device) -> dict[str, float]:
    """mMV@5 (leave-one-patient-out) and zero-shot balanced accuracy; their mean selects."""
    if len(tiles) < 6:
        return {"val_mMV@5": 0.0, "val_zs_bal_acc": 0.0, "val_score": 0.0}
    emb = embed_tiles(model, tiles, pre, device)
    names = labels.astype(str)
    ranking = rank_neighbours(emb, names, 5, patients.astype(str))
    mmv = majority_vote_at_k(names, neighbour_labels(ranking, names), 5)
    class_text = model.encode_text(text["prompt_emb"])  # [C, P, D]
    protos = class_prototypes(class_text, text["prompt_mask"]).float().cpu().numpy()
    predicted = (emb @ protos.T).argmax(axis=1)
    seen = labels >= 0
    zs = classification_metrics(labels[seen], predicted[seen])["balanced_accuracy"]
    return {"val_mMV@5": float(mmv), "val_zs_bal_acc": float(zs),
            "val_score": float((mmv + zs) / 2)}
