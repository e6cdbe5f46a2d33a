"""Fuzz the HTTP service harder than the test suite: schemathesis over its OpenAPI schema
(``tests/service/fuzzing.py``), ``--examples`` generated requests per operation and
generation mode (default 200), against a fresh copy of the service test library (two
synthetic slides, one image, two reports, the fast fake encoder). Prints a table of
operations, requests, status codes and server errors; exits 1 on any server error.

    python benchmarks/fuzz_service.py --examples 200 [--json fuzz.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from evaluation.test_synthetic_slides import write_labels  # noqa: E402
from histoseek.evaluation.synthetic_slides import make_synthetic_slides  # noqa: E402
from histoseek.library import Library  # noqa: E402
from search.test_slide_search import FakeHist  # noqa: E402
from service.fuzzing import fuzz, throwaway_copy  # noqa: E402
from service.helpers import REPORTS  # noqa: E402


def build(folder: Path) -> tuple[Path, Path]:
    """The library of ``tests/service/conftest.py`` and a tile that is not in it."""
    labels = write_labels(folder / "tiles")
    slides = make_synthetic_slides(labels, folder / "slides", 2, seed=3, compression="zlib")
    with Library.create(folder / "lib", encoder=FakeHist(), text_encoder=FakeHist()) as lib:
        lib.add([s.path for s in slides], progress=False)
        lib.add([labels.parent / "polyp" / "src0_00.png"], mpp=0.5, progress=False)
        lib.add_reports(REPORTS)
    return folder / "lib", labels.parent / "normal" / "src1_03.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and mode")
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="histoseek-fuzz-") as tmp:
        library, spare = build(Path(tmp) / "built")
        copy, root = throwaway_copy(library, Path(tmp) / "run")
        shutil.copy(spare, root / "spare.png")
        started = time.perf_counter()
        result = fuzz(copy, root, args.examples)
        seconds = time.perf_counter() - started
    print(f"schemathesis fuzz, {args.examples} examples per operation and mode "
          f"(positive + negative), {seconds:.0f} s\n")
    print(result.table())
    for line in result.server_errors:
        print(f"\nSERVER ERROR {line}")
    if args.json:
        args.json.write_text(json.dumps({
            "examples": args.examples, "seconds": round(seconds, 1),
            "requests": result.requests, "server_errors": result.server_errors,
            "operations": [{"operation": op.label, "requests": op.requests,
                            "statuses": {str(k): v for k, v in sorted(op.statuses.items())},
                            "server_errors": len(op.server_errors)}
                           for op in result.operations]}, indent=2))
    sys.exit(1 if result.server_errors else 0)


if __name__ == "__main__":
    main()
