"""Slide-level figures on synthetic slides with known regions (``evaluation.slide_eval``).

    python scripts/make_synthetic_slides.py --labels ../shared/data/ebhi-seg/labels.csv \\
        --split configs/splits/ebhi-seg-seed0.json --part test --n 30 --seed 0 \\
        --out runs/synthetic/test
    python benchmarks/synthetic_slide_eval.py runs/synthetic/test/truth.json \\
        --library runs/synthetic/lib-test --json docs/slide-eval.json --pictures docs/images

Indexes the slides (resumable), then prints the region-localisation hit rate, slide mMV@5
(float and binary coarse codes) and zero-shot slide balanced accuracy. ``--select-top-k``
scores zero-shot pooling depths on slides that should come from *training* sources (the
``--part train`` set): the shipped ``TOP_K`` is picked there, never on the test slides.
``--pictures`` writes a region-search heatmap and a classification heatmap to look at.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from histoseek.evaluation.slide_eval import (
    index_synthetic,
    localisation,
    slide_retrieval,
    zero_shot_slides,
)
from histoseek.viz.classify_picture import write_classification_heatmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("truth", type=Path, help="truth.json of make_synthetic_slides.py")
    parser.add_argument("--library", type=Path, required=True, help="library folder")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--max-region-queries", type=int, default=None)
    parser.add_argument("--select-top-k", type=int, nargs="*", default=None,
                        help="only score these zero-shot pooling depths (selection run)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--pictures", type=Path, default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    lib, slides = index_synthetic(args.truth, args.library, encoder=args.encoder)
    indexed = time.perf_counter() - started
    info = lib.info()
    if args.select_top_k:
        for top_k in args.select_top_k:
            zs = zero_shot_slides(lib, slides, top_k=top_k)
            print(f"top_k {top_k:3d}: zero-shot balanced accuracy "
                  f"{zs['balanced_accuracy']:.3f}, abstains {zs['abstention_rate']:.2f}")
        lib.close()
        return
    result = {
        "truth": str(args.truth), "slides": len(slides), "tiles": info["tiles"],
        "encoder": info["encoder"]["name"], "index_seconds": round(indexed, 1),
        "bytes_per_slide": {kind: round(total / max(len(slides), 1))
                            for kind, total in info["slide_summary_bytes"].items()},
        "tile_vector_bytes_per_slide": round(info["tiles"] * 4 * info["encoder"]["dim"]
                                             / max(len(slides), 1)),
        "localisation": localisation(lib, slides, max_queries=args.max_region_queries),
        "slide_retrieval": slide_retrieval(lib, slides),
        "slide_retrieval_binary": slide_retrieval(lib, slides, slide_codes="binary"),
        "zero_shot": zero_shot_slides(lib, slides),
    }
    if args.pictures is not None:
        args.pictures.mkdir(parents=True, exist_ok=True)
        slide = slides[0]
        region = max(slide.regions, key=lambda r: r.area)
        hits = lib.search(region=(slide.path, *region.box), level="region", k=5)
        written = lib.write_heatmaps(hits, args.pictures / "region-search",
                                     title=f"region query: {region.label}, {slide.slide_id}")
        written.append(write_classification_heatmap(lib.classify(slide.path, progress=False),
                                                    args.pictures / "classify"))
        result["pictures"] = [str(p) for p in written]
    lib.close()
    loc, ret, rb, zs = (result["localisation"], result["slide_retrieval"],
                        result["slide_retrieval_binary"], result["zero_shot"])
    print(f"{len(slides)} synthetic slides, {info['tiles']} tiles, encoder {result['encoder']}")
    print(f"region localisation: hit rate {loc['hit_rate']:.3f} (IoU >= 0.5), mean IoU "
          f"{loc['mean_iou']:.3f}, {loc['queries']} queries, {loc['seconds_per_query']:.3f} s")
    print(f"slide retrieval: mMV@5 {ret['mMV@5']:.3f} (binary codes {rb['mMV@5']:.3f}), "
          f"top-1 {ret['top1_accuracy']:.3f}, {ret['seconds_per_query']:.3f} s per query")
    print(f"zero-shot slide subtyping: balanced accuracy {zs['balanced_accuracy']:.3f}, "
          f"abstains on {zs['abstention_rate']:.2f}, per class {zs['per_class_accuracy']}")
    print(f"bytes per slide: {result['bytes_per_slide']} (all tile vectors: "
          f"{result['tile_vector_bytes_per_slide']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
