"""Cross-domain look: the built-in model (trained on colorectal biopsy tiles) on the two real
slides of ../shared/data/tiny-wsi, whose tissue is only known for the TCGA one (TCGA-CR-7395,
head & neck squamous cell carcinoma, HNSC).

1. Zero-shot over every entity of the knowledge tree (55): the share of TCGA tiles whose top-1
   entity carries the TCGA code HNSC, and whose top-3 does; which entities win instead.
2. A retrieval grid: TCGA and CMU tiles queried against a library of the EBHI-Seg test tiles
   plus the other slide (each query's own slide excluded), to look at.

    python benchmarks/cross_domain.py --out docs/figures
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np

from histoseek import Library, create_encoder
from histoseek.evaluation.prototypes import class_prototypes
from histoseek.knowledge.tree import class_prompts, default_tree
from histoseek.search.queries import slide_tiles
from histoseek.slides.tiling import TilingConfig
from histoseek.viz.grid import GridCell, render_grid

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLIDES = {"tcga-cr-7395-01a-01-ts1.svs": 0.25, "cmu-1-small-region.svs": None}


def zero_shot_tree(encoder, tiles: np.ndarray) -> tuple[list[str], np.ndarray]:  # type: ignore[no-untyped-def]
    tree = default_tree()
    entities = list(tree)
    protos = class_prototypes([encoder.encode_texts(class_prompts(e)) for e in entities])
    sims = encoder.encode_images(tiles) @ protos.T
    return [e.id for e in entities], sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--encoder", default="histoseek-base")
    args = parser.parse_args()
    encoder = create_encoder(args.encoder)
    tiling = TilingConfig()
    slide = DATA / "tiny-wsi" / "tcga-cr-7395-01a-01-ts1.svs"
    _, tiles = slide_tiles(slide, tiling, 0.25, 512)
    ids, sims = zero_shot_tree(encoder, tiles)
    tree = default_tree()
    hnsc = {e.id for e in tree if "HNSC" in e.tcga_code}
    top = np.argsort(-sims, axis=1)
    top1 = [ids[t[0]] for t in top]
    result = {
        "encoder": args.encoder, "tcga_tiles": len(tiles),
        "top1_is_hnsc": float(np.mean([t in hnsc for t in top1])),
        "top3_has_hnsc": float(np.mean([any(ids[j] in hnsc for j in t[:3]) for t in top])),
        "top1_any_squamous": float(np.mean(["squamous" in t for t in top1])),
        "top1_counts": collections.Counter(top1).most_common(6),
    }
    print(json.dumps(result, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        lib = Library.create(Path(tmp) / "lib", encoder=encoder)  # the one loaded above
        labels = DATA / "ebhi-seg" / "labels.csv"
        split = json.loads((Path(__file__).resolve().parents[1] / "configs" / "splits" /
                            "ebhi-seg-seed0.json").read_text())
        import csv

        with open(labels, newline="") as fh:
            test_rows = [r for r in csv.DictReader(fh) if r["source_id"] in
                         set(split["test_sources"])]
        lib.add([DATA / "ebhi-seg" / r["path"] for r in test_rows[::3]], labels=labels,
                progress=False)
        for name, mpp in SLIDES.items():
            lib.add([DATA / "tiny-wsi" / name], mpp=mpp, progress=False)
        rows = []
        for name, mpp in SLIDES.items():
            boxes, pixels = slide_tiles(DATA / "tiny-wsi" / name, tiling, mpp, 3)
            for (x, y, _w, _h), px in zip(boxes, pixels, strict=True):
                hits = lib.search(image=px, k=5, exclude={"slide": name})
                rows.append((GridCell(px, f"{name[:14]}\n{x},{y}"),
                             [GridCell(lib.hit_pixels(hit, 160),
                                       f"{hit.label or hit.slide[:14]}\n{hit.score:.3f}")
                              for hit in hits]))
        args.out.mkdir(parents=True, exist_ok=True)
        render_grid(rows, args.out / "cross_domain_grid.png",
                    title=f"{args.encoder}: real slides (own slide excluded) vs EBHI-Seg test "
                          "tiles + the other slide")
        lib.close()
    (args.out / "cross_domain.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
