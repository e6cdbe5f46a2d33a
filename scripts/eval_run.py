"""Score a training run's best weights with the evaluation harness on the held-out test split.

    python scripts/eval_run.py runs/cpu-base --name cpu-base

Writes ``docs/training/NAME.harness.json``: the harness's retrieval (leave-one-case-out) and
zero-shot figures on the test cases, the selection that picked the weights (best epoch and
validation score, read from the run's ``metrics.csv``) and the training time the run recorded.
The test split only measures here; it chooses nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "data" / "ebhi-seg" / "labels.csv"
SPLIT = ROOT / "configs" / "splits" / "ebhi-seg-seed0.json"
PROMPTS = ROOT / "configs" / "zeroshot" / "ebhi-seg.yaml"


def selection(run: Path) -> dict[str, float | int]:
    """The supervised epoch with the best validation score, as the training loop chose it."""
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    supervised = [r for r in rows if r["stage"] == "supervised"]
    best = max(supervised, key=lambda r: float(r["val_score"]))
    return {"best_epoch": int(best["epoch"]), "val_score": float(best["val_score"]),
            "val_mMV@5": float(best["val_mMV@5"]),
            "val_zs_bal_acc": float(best["val_zs_bal_acc"]),
            "epochs_run": len(rows),
            "train_seconds_summed": round(sum(float(r["seconds"]) for r in rows), 1)}


def harness(kind: str, encoder: str, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "histoseek.cli", "eval", kind, "--data", str(LABELS),
           "--encoder", encoder, "--split", str(SPLIT), "--subset", "test", *extra,
           "--out", str(out), "--cache", str(out.parent / "cache")]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "metrics.json").read_text())[encoder]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "eval-runs")
    args = parser.parse_args()
    if not LABELS.is_file():
        sys.exit(f"{LABELS}: the shared EBHI-Seg data is needed to score a run")
    weights = (args.run / "best.safetensors").resolve()
    model = json.loads((args.run / "config.json").read_text())["model"]
    spec = f"{model}@{weights}"  # the model config the run trained (its encoder of that name)
    work = args.work / args.name
    record = {
        "run": args.run.name, "selection": selection(args.run),
        "retrieval": harness("retrieval", spec, work / "retrieval",
                             ["--exclude-same", "source_id", "--k", "1,5,10"]),
        "zeroshot": harness("zeroshot", spec, work / "zeroshot", ["--classes", str(PROMPTS)]),
    }
    for stamp in ("started", "finished"):
        if (args.run / stamp).is_file():
            record[stamp] = int((args.run / stamp).read_text().split()[0])
    if "started" in record and "finished" in record:
        record["wall_seconds"] = record["finished"] - record["started"]
    out = ROOT / "docs" / "training" / f"{args.name}.harness.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("selection",)} | {
        "test_mMV@5": record["retrieval"]["mMV@5"],
        "test_zs_bal_acc": record["zeroshot"]["balanced_accuracy"]}, indent=1))


if __name__ == "__main__":
    main()
