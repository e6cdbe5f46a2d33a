"""Cross-domain proxies for each encoder, beside the frozen reference (issue: generalisation).

    python benchmarks/generalisation.py --encoder histoseek-base@runs/x/best.safetensors \
        --encoder imagenet-lite0 --name x

Per encoder, on the EBHI test split (leave-one-case-out) and on out-of-domain tiles:
- ``withheld_mMV@5``: mMV@5 over the queries of the withheld classes (normal, serrated
  adenoma) only; meaningful for a model trained without them (configs/v2/*withheld*.yaml);
- ``test_mMV@5``: all test queries;
- ``ood_overlap@10``: share of each out-of-domain tile's 10 nearest neighbours under the
  reference (imagenet-lite0) kept by the encoder, on the tiles of the two tiny-wsi slides
  (head-and-neck SCC, CMU-1) and on zoomed-in random crops of test tiles.
Writes ``docs/training/NAME.generalisation.json`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from histoseek.evaluation.cache import EmbeddingCache, embed_paths, encoder_from_spec
from histoseek.evaluation.datasets import load_dataset
from histoseek.evaluation.generalisation import (
    neighbourhood_overlap,
    random_crops,
    remix,
    restricted_mmv,
    slide_tiles,
)
from histoseek.evaluation.retrieval import select_subset
from histoseek.search.queries import query_tile

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LABELS = SHARED / "ebhi-seg" / "labels.csv"
SPLIT = ROOT / "configs" / "splits" / "ebhi-seg-seed0.json"
SLIDES = [(SHARED / "tiny-wsi" / "cmu-1-small-region.svs", None),
          (SHARED / "tiny-wsi" / "tcga-cr-7395-01a-01-ts1.svs", 0.25)]
WITHHELD = ["normal", "serrated_adenoma"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", action="append", required=True, help="NAME[@WEIGHTS]")
    parser.add_argument("--reference", default="imagenet-lite0")
    parser.add_argument("--name", required=True, help="record name (docs/training/NAME...)")
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--general-weights", type=float, nargs="*", default=[0.0, 0.3, 0.7],
                        help="v2 models: also score these re-mixes of the general branch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not LABELS.is_file():
        sys.exit(f"{LABELS}: the shared EBHI-Seg data is needed")
    test = select_subset(load_dataset(LABELS), SPLIT, "test")
    groups = np.array(test.source_ids)
    labels = np.array(test.labels)
    test_tiles = [query_tile(p, 224)[0] for p in test.paths]
    ood = {"slides": np.concatenate([slide_tiles(p, mpp) for p, mpp in SLIDES]),
           "crops": random_crops(test_tiles, args.crops, seed=0)}
    cache = EmbeddingCache(ROOT / "runs" / "eval-cache")
    specs = [args.reference] + [s for s in args.encoder if s != args.reference]
    results, reference = {}, {}
    runs, weights = [], {}
    for spec in specs:
        encoder = encoder_from_spec(spec)
        emb = embed_paths(encoder, test.paths, cache)
        ood_emb = {k: encoder.encode_images(v) for k, v in ood.items()}
        tower = getattr(getattr(encoder, "model", None), "image", None)
        runs.append((spec, emb, ood_emb))
        if hasattr(tower, "general_weight"):
            weights[spec] = tower.general_weight
        for g in args.general_weights if hasattr(tower, "general_weight") else []:
            mix = {"general_dim": tower.general_dim, "g0": tower.general_weight, "g": g}
            runs.append((f"{spec} [g={g}]", remix(emb, **mix),
                         {k: remix(v, **mix) for k, v in ood_emb.items()}))
    for spec, emb, ood_emb in runs:
        if spec == args.reference:
            reference = ood_emb
        withheld = restricted_mmv(emb, labels, groups, WITHHELD, k=5)
        everything = restricted_mmv(emb, labels, groups, sorted(set(labels)), k=5)
        results[spec] = {
            "withheld_mMV@5": withheld["all"],
            "withheld_per_class_mMV@5": {c: withheld[c] for c in WITHHELD if c in withheld},
            "test_mMV@5": everything["all"],
            **{f"ood_overlap@10_{k}": float(neighbourhood_overlap(reference[k], v, 10).mean())
               for k, v in ood_emb.items()},
            "n_ood": {k: len(v) for k, v in ood.items()},
        }
        if spec in weights:
            results[spec]["general_weight"] = weights[spec]
        print(spec, json.dumps(results[spec]), flush=True)
    out = args.out or ROOT / "docs" / "training" / f"{args.name}.generalisation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"reference": args.reference, "withheld": WITHHELD,
                               "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
