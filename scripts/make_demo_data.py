"""Rebuild the bundled demo set from ../shared (run once by maintainers; output is committed).

Up to six EBHI-Seg tiles per class, each from a different case (source_id) of the *test*
part of configs/splits/ebhi-seg-seed0.json (so the built-in model never trained on them),
chosen by a seeded draw, copied unchanged; plus the CMU-1-Small-Region slide. Both licences
allow redistribution with attribution (see src/histoseek/demo_data/ATTRIBUTION.md).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "src" / "histoseek" / "demo_data"
PER_CLASS = 6
SPLIT = Path(__file__).resolve().parents[1] / "configs" / "splits" / "ebhi-seg-seed0.json"


def main() -> None:
    with open(SHARED / "ebhi-seg" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    test_sources = set(json.loads(SPLIT.read_text())["test_sources"])
    rows = [r for r in rows if r["source_id"] in test_sources]
    rng = random.Random(0)
    chosen = []
    for label in sorted({r["label"] for r in rows}):
        by_case: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            if row["label"] == label:
                by_case.setdefault(row["source_id"], []).append(row)
        cases = sorted(by_case)
        rng.shuffle(cases)
        for case in cases[:PER_CLASS]:
            chosen.append(sorted(by_case[case], key=lambda r: r["path"])[0])
    tiles = OUT / "tiles"
    shutil.rmtree(tiles, ignore_errors=True)
    for row in chosen:
        dest = tiles / row["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED / "ebhi-seg" / row["path"], dest)
    with open(tiles / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "source_id", "slide_id"])
        writer.writeheader()
        writer.writerows(chosen)
    (OUT / "slides").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / "tiny-wsi" / "cmu-1-small-region.svs",
                    OUT / "slides" / "cmu-1-small-region.svs")
    print(f"{len(chosen)} tiles and 1 slide written to {OUT}")


if __name__ == "__main__":
    main()
