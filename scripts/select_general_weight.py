"""Choose v2's general-branch weight g on VALIDATION data only, and show what it trades.

    python scripts/select_general_weight.py runs/v2-l2sp --name v2-l2sp

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

from histoseek.evaluation.generalisation import (
    neighbourhood_overlap,
    random_crops,
    remix,
    restricted_mmv,
)
from histoseek.models.factory import create_model, get_model_config
from histoseek.training.data import TrainingPack, decode_jpeg
from histoseek.training.validate import embed_tiles

ROOT = Path(__file__).resolve().parents[1]
GRID = [round(0.1 * i, 1) for i in range(10)]
TOLERANCE = 0.01


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
    with torch.inference_mode():
        joint = {key: embed_tiles(model, tiles, pre, torch.device("cpu"))
                 for key, tiles in sets.items()}
    names = pack.label[val].astype(str)
    rows = []
    for g in GRID:
        mixed = {key: remix(v, tower.general_dim, tower.general_weight, g)
                 for key, v in joint.items()}
        row = {"g": g, "val_mMV@5": restricted_mmv(
            mixed["val"], names, pack.patient[val].astype(str), sorted(set(names)))["all"]}
        for key in ("slides", "crops"):
            general = remix(joint[key], tower.general_dim, tower.general_weight, 1.0)
            row[f"ood_overlap@10_{key}"] = float(neighbourhood_overlap(
                general, mixed[key], 10).mean())
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
