"""Score trained weights on a packed test split with the harness's own metric functions.

Used where the shared data is not at hand (a rented GPU box): the test tiles travel as a
pack. Retrieval is leave-one-case-out; zero-shot uses the knowledge-base prompts only;
text→image queries each class with its knowledge prompts (mean embedding).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histoseek.encoders.torch_tower import resolve_device
from histoseek.errors import InputError
from histoseek.evaluation.metrics import classification_metrics, retrieval_metrics
from histoseek.evaluation.protocols import neighbour_labels, rank_neighbours
from histoseek.evaluation.prototypes import class_prototypes
from histoseek.models.factory import create_model, get_model_config
from histoseek.training.data import LEGACY_TILING, PackTiling, TrainingPack, decode_jpeg
from histoseek.training.validate import embed_tiles


@torch.inference_mode()
def evaluate_weights(weights: Path, pack_path: Path, model: str = "histoseek-base",
                     device: str = "auto", **overrides: Any) -> dict[str, Any]:
    dev = resolve_device(device)
    net = create_model(model, pretrained=weights, **overrides).to(dev).eval()
    pack = TrainingPack.load(pack_path)
    pre = get_model_config(model)["preprocess"]
    tiles = np.stack([decode_jpeg(b) for b in pack.jpeg])
    emb = embed_tiles(net, tiles, (int(pre["input_px"]), tuple(pre["mean"]), tuple(pre["std"])),
                      dev)
    names = np.array(pack.classes)[pack.label]
    ranking = rank_neighbours(emb, names, 10, pack.patient.astype(str))
    out: dict[str, Any] = {"n_test_tiles": len(tiles), "pack_tiling": pack.tiling.to_dict()}
    out.update({f"retrieval_{k}": v for k, v in retrieval_metrics(
        names, neighbour_labels(ranking, names), (1, 5, 10),
        ranking.n_eligible_relevant).items()})
    class_text = net.encode_text(torch.from_numpy(pack.prompt_emb).to(dev))
    protos = class_prototypes(class_text, torch.from_numpy(pack.prompt_mask).to(dev))
    protos = protos.float().cpu().numpy()
    sims = emb @ protos.T
    predicted = np.array(pack.classes)[sims.argmax(axis=1)]
    out.update({f"zeroshot_{k}": v for k, v in classification_metrics(
        names, predicted, pack.classes).items()})
    out["zeroshot_per_class_acc"] = {c: float(np.mean(predicted[names == c] == c))
                                     for c in pack.classes}
    per_class = {}
    for c, cls in enumerate(pack.classes):
        top = np.argsort(-sims[:, c])[:10]
        rel = names[top] == cls
        per_class[cls] = {"P@10": float(rel.mean()), "R@10": float(rel.any()),
                          "recall@10": float(rel.sum() / max(1, min(10, (names == cls).sum())))}
    out["text2image_per_class"] = per_class
    out["text2image_P@10"] = float(np.mean([v["P@10"] for v in per_class.values()]))
    out["text2image_R@10"] = float(np.mean([v["R@10"] for v in per_class.values()]))
    return out


def evaluate_run(run: Path, pack: Path) -> dict[str, Any]:
    """Evaluate a run folder's best weights with the architecture it was trained with.

    A run records its training pack's tiling; a test pack cut at another scale or tile size
    would score the weights on tiles unlike those they learned from, so it is refused. Runs
    from before the record are checked against the legacy tiling.
    """
    config = json.loads((run / "config.json").read_text())
    trained = PackTiling.from_dict(config["pack_tiling"], run / "config.json") \
        if "pack_tiling" in config else LEGACY_TILING
    tested = TrainingPack.load_tiling(pack)
    if (tested.tile_px, tested.target_mpp) != (trained.tile_px, trained.target_mpp):
        raise InputError(
            f"{pack}: test pack tiling {tested.to_dict()} differs from the tiling run "
            f"{run.name} trained on {trained.to_dict()}; build the test pack with the run's "
            "tiling (build_test_pack(..., tiling=...))")
    weights = run / "best.safetensors"
    return {"run": run.name, **evaluate_weights(weights, pack, config["model"],
                                                **config.get("model_overrides", {}))}


def main() -> None:
    """``python -m histoseek.training.evaluate_pack RUN_DIR TEST_PACK`` prints JSON."""
    print(json.dumps(evaluate_run(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))


if __name__ == "__main__":
    main()
