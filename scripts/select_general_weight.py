"""Choose v2's general-branch weight g on VALIDATION data only, and show what it trades.

    python scripts/select_general_weight.py runs/v2-deep --name v2-deep

The general branch is frozen, so g (the library vector is ``[sqrt(g) G, sqrt(1-g) T]``) is a
choice made after training. For g in 0, 0.1, ..., 0.9 this scores, on the run's validation
tiles (held-out training cases, from the pack): mMV@5 leave-one-patient-out, and the share of
10 nearest neighbours kept from frozen imagenet-lite0 on out-of-domain tiles (the pack's slide
tiles, other organs; zoomed-in crops of the validation tiles). Rule, fixed before looking:
**the largest g whose validation mMV@5 is within 0.01 of the best g's** (the most general mix
that costs no measurable in-domain retrieval). Writes docs/training/NAME.g-selection.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from histoseek.evaluation.generalisation import neighbourhood_overlap, random_crops
from histoseek.evaluation.metrics import majority_vote_at_k
from histoseek.evaluation.protocols import neighbour_labels, rank_neighbours
from histoseek.models.factory import create_model, get_model_config
from histoseek.training.data import TrainingPack, decode_jpeg
from histoseek.training.validate import embed_tiles

ROOT = Path(__file__).resolve().parents[1]
GRID = [round(0.1 * i, 1) for i in range(10)]
TOLERANCE = 0.01


def mix(general: np.ndarray, tuned: np.ndarray, g: float) -> np.ndarray:
    return np.concatenate([np.sqrt(g) * general, np.sqrt(1 - g) * tuned], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    pack = TrainingPack.load(ROOT / config["data"]["pack"])
    model = create_model(config["model"], pretrained=args.run / "best.safetensors").eval()
    pre = get_model_config(config["model"])["preprocess"]
    pre = (int(pre["input_px"]), tuple(pre["mean"]), tuple(pre["std"]))
    val = np.flatnonzero(pack.is_val & (pack.label >= 0))
    slides = np.flatnonzero(pack.label < 0)
    val_tiles = np.stack([decode_jpeg(pack.jpeg[i]) for i in val])
    sets = {"val": val_tiles,
            "slides": np.stack([decode_jpeg(pack.jpeg[i]) for i in slides]),
            "crops": random_crops(list(val_tiles), 200, seed=0)}
    tower = model.image
    d, g0 = tower.general_dim, tower.general_weight
    parts = {}
    with torch.inference_mode():
        for key, tiles in sets.items():
            joint = embed_tiles(model, tiles, pre, torch.device("cpu"))
            parts[key] = (joint[:, :d] / np.sqrt(g0), joint[:, d:] / np.sqrt(1 - g0))
    names = pack.label[val].astype(str)
    rows = []
    for g in GRID:
        emb = mix(*parts["val"], g)
        ranking = rank_neighbours(emb, names, 5, pack.patient[val].astype(str))
        row = {"g": g, "val_mMV@5": float(majority_vote_at_k(
            names, neighbour_labels(ranking, names), 5))}
        for key in ("slides", "crops"):
            general, tuned = parts[key]
            row[f"ood_overlap@10_{key}"] = float(neighbourhood_overlap(
                general, mix(general, tuned, g), 10).mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(r["val_mMV@5"] for r in rows)
    chosen = max(r["g"] for r in rows if r["val_mMV@5"] >= best - TOLERANCE)
    out = ROOT / "docs" / "training" / f"{args.name}.g-selection.json"
    out.write_text(json.dumps({"run": args.run.name, "rule": f"largest g with val mMV@5 >= "
                               f"best - {TOLERANCE}", "chosen_g": chosen, "rows": rows},
                              indent=1) + "\n")
    print(f"chosen g = {chosen} (best val mMV@5 {best:.3f}); wrote {out}")


if __name__ == "__main__":
    main()
