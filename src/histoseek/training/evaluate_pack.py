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
from histoseek.evaluation.metrics import classification_metrics, retrieval_metrics
from histoseek.evaluation.protocols import neighbour_labels, rank_neighbours
from histoseek.models.factory import create_model, get_model_config
from histoseek.training.data import TrainingPack, decode_jpeg
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
    out: dict[str, Any] = {"n_test_tiles": len(tiles)}
    out.update({f"retrieval_{k}": v for k, v in retrieval_metrics(
        names, neighbour_labels(ranking, names), (1, 5, 10),
        ranking.n_eligible_relevant).items()})
    mask = torch.from_numpy(pack.prompt_mask).to(dev).float()
    class_text = net.encode_text(torch.from_numpy(pack.prompt_emb).to(dev))
    protos = torch.nn.functional.normalize((class_text * mask[..., None]).sum(1)
                                           / mask.sum(1, keepdim=True), dim=-1)
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
    """Evaluate a run folder's best weights with the architecture it was trained with."""
    config = json.loads((run / "config.json").read_text())
    weights = run / "best.safetensors"
    return {"run": run.name, **evaluate_weights(weights, pack, config["model"],
                                                **config.get("model_overrides", {}))}


def main() -> None:
    """``python -m histoseek.training.evaluate_pack RUN_DIR TEST_PACK`` prints JSON."""
    print(json.dumps(evaluate_run(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))


if __name__ == "__main__":
    main()
