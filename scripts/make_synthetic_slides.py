"""Write synthetic whole slides with known regions (and truth.json) from a labels CSV.

    python scripts/make_synthetic_slides.py --labels ../shared/data/ebhi-seg/labels.csv \
        --split configs/splits/ebhi-seg-seed0.json --out /tmp/synth --n 10

With ``--split`` only that split's test sources are used (``--part train`` for the others),
so slides built for evaluation never contain tiles of cases a model was trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from histoseek.errors import HistoseekError
from histoseek.evaluation.synthetic_slides import make_synthetic_slides, split_sources


def write_thumbnail(slide_path: Path, boxes: list[tuple[str, tuple[int, ...]]], out: Path,
                    max_px: int = 1024) -> None:
    """A thumbnail read through histoseek's reader, with the truth boxes outlined."""
    from PIL import Image, ImageDraw

    from histoseek.slides.reader import open_slide

    with open_slide(slide_path) as slide:
        image = Image.fromarray(slide.thumbnail(max_px))
        scale = image.width / slide.dimensions[0]
    draw = ImageDraw.Draw(image)
    for label, (x, y, w, h) in boxes:
        xy = [x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1]
        draw.rectangle(xy, outline=(0, 0, 0), width=2)
        draw.text((xy[0] + 4, xy[1] + 4), label, fill=(0, 0, 0))
    image.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True,
                        help="labels CSV (path,label,source_id[,slide_id]; paths relative to it)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, default=10, help="number of slides (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", type=Path, help="split JSON; restricts tiles to its sources")
    parser.add_argument("--part", choices=("test", "train"), default="test",
                        help="which sources of --split to use (default test)")
    parser.add_argument("--mpp", type=float, default=0.5,
                        help="level-0 microns per pixel written to the TIFFs (default 0.5)")
    parser.add_argument("--compression", choices=("jpeg", "zlib"), default="jpeg")
    parser.add_argument("--thumbnail", type=Path,
                        help="also write a thumbnail of the first slide, regions outlined")
    args = parser.parse_args(argv)
    try:
        sources = split_sources(args.split, args.part) if args.split else None
        with tqdm(total=args.n, unit="slide") as bar:
            slides = make_synthetic_slides(
                args.labels, args.out, args.n, seed=args.seed, sources=sources, mpp=args.mpp,
                compression=args.compression, on_slide=lambda _: bar.update())
        if args.thumbnail and slides:
            write_thumbnail(slides[0].path, [(r.label, r.box) for r in slides[0].regions],
                            args.thumbnail)
    except HistoseekError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(slides)} slides and {args.out / 'truth.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
