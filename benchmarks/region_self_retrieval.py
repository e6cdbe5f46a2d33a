"""Region self-retrieval on real slides: a region cropped from an indexed slide must find its
own location first. Prints the IoU of the top region hit with the query box.

    python benchmarks/region_self_retrieval.py LIBRARY SLIDE[:MPP] ... [--boxes 5 --tiles 2]

Query boxes are ``--tiles`` x ``--tiles`` library tiles placed on evenly spaced tissue tiles
of each slide (the library's own tile grid), so the figure is reproducible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from histoseek.evaluation.synthetic_slides import box_iou
from histoseek.library import Library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("slides", nargs="+", help="SLIDE or SLIDE:MPP (e.g. the TCGA slide:0.25)")
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--tiles", type=int, default=2)
    args = parser.parse_args()
    ious = []
    with Library.open(args.library) as lib:
        rows = {Path(r["path"]).resolve(): r for r in lib.sources()}
        for spec in args.slides:
            path, _, mpp = spec.partition(":")
            source = rows[Path(path).resolve()]
            _, boxes = lib.store.source_tiles(int(source["id"]))
            side = int(np.median(boxes[:, 2]))
            picks = np.linspace(0, len(boxes) - 1, args.boxes + 2).astype(int)[1:-1]
            for x, y, _, _ in boxes[picks]:
                box = (int(x), int(y), args.tiles * side, args.tiles * side)
                hits = lib.search(region=(path, *box), level="region", k=1,
                                  include_query_region=True, mpp=float(mpp) if mpp else None)
                top = (hits[0].x, hits[0].y, hits[0].w, hits[0].h) if hits else (0, 0, 0, 0)
                same = bool(hits) and Path(hits[0].path).resolve() == Path(path).resolve()
                iou = box_iou(top, box) if same else 0.0
                ious.append(iou)
                print(f"{Path(path).name} query {box} -> top {top} "
                      f"{'same slide' if same else 'OTHER slide'}: IoU {iou:.2f}")
    print(f"mean IoU {np.mean(ious):.3f}; top hit at its own location (IoU >= 0.5) "
          f"{np.mean(np.array(ious) >= 0.5):.0%} of {len(ious)} queries")


if __name__ == "__main__":
    main()
