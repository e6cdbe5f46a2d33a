"""Make the mistakes users make, through the real CLI, and print what histoseek answers.

Each case runs ``histoseek`` in a subprocess on small libraries built from the bundled demo
set (``classic`` encoder: no model to load), and reports the exit status and the line a user
reads. Give ``--before SRC`` (the ``src`` folder of an older checkout, e.g. a git worktree) to
print the same cases run by that version beside this one:

    git worktree add /tmp/before <old-commit>
    python scripts/user_mistakes.py --before /tmp/before/src --out docs/user-mistakes.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "histoseek" / "demo_data"
TCGA = REPO.parent / "shared" / "data" / "tiny-wsi" / "tcga-cr-7395-01a-01-ts1.svs"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def histoseek(src: Path, *args: object) -> Run:
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-c", "from histoseek.cli import main; main()",
                           *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def said(run: Run) -> str:
    """The line a user reads: the error or warning, else the summary or a count of hits."""
    lines = [ln.strip() for ln in (run.err + "\n" + run.out).splitlines() if ln.strip()]
    for prefix in ("error:", "skipped", "note:"):
        hits = [ln for ln in lines if ln.startswith(prefix)]
        if hits:
            return " / ".join(hits[:2])
    return lines[-1] if lines else "(nothing)"


def hits_json(run: Run) -> list[dict]:
    return [json.loads(ln) for ln in run.out.splitlines() if ln.startswith("{")]


def setup(work: Path) -> dict[str, Path]:
    """Small inputs: 12 demo tiles in class folders, a slide, CSVs and files with mistakes."""
    tiles = work / "tiles"
    with open(DEMO / "tiles" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:12]
    for row in rows:
        dest = tiles / row["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / "tiles" / row["path"], dest)
    with open(tiles / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tiles / "notes.pdf").write_bytes(b"%PDF-1.4 not a slide")
    (work / "class-header.csv").write_text(
        "path,class\n" + "".join(f"{r['path']},{r['label']}\n" for r in rows))
    (work / "no-match.csv").write_text(
        "path,label\n" + "".join(f"elsewhere/{Path(r['path']).name},{r['label']}\n"
                                 for r in rows))
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(work / "one-pixel.png")
    with open(work / "reports.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "text"])
        writer.writerow(["short-1", "Colon biopsy: tubular adenoma with low-grade dysplasia."])
        writer.writerow(["huge", "Colon biopsy. " + "Normal mucosa. " * 12_000])  # ~180k chars
        writer.writerow(["short-2", "Rectum: poorly differentiated adenocarcinoma."])
    return {"tiles": tiles, "labels": tiles / "labels.csv", "slide": DEMO / "slides" /
            "cmu-1-small-region.svs", "query": tiles / rows[0]["path"]}


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Path, Path, dict[str, Path]], str]  # (src, work, inputs) -> what was seen


def _built(src: Path, work: Path, p: dict[str, Path]) -> Path:
    lib = work / "lib"
    if not lib.exists():
        histoseek(src, "index", lib, p["tiles"], p["slide"], "--labels", p["labels"],
                  "--encoder", "classic")
    return lib


def case_where(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--image", p["query"], "--where",
                  "lable=normal", "--json")
    return f"exit {r.code}; " + (said(r) if r.code else f"{len(hits_json(r))} hits")


def case_exclude(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--image", p["query"], "--exclude",
                  "patient=123", "--json", "-k", "3")
    return f"exit {r.code}; " + (said(r) if r.code else f"{len(hits_json(r))} hits")


def case_target(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--image", p["query"], "--target", "foo",
                  "--json", "-k", "3")
    return f"exit {r.code}; " + (said(r) if r.code else f"{len(hits_json(r))} hits")


def case_labels_header(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", work / "lib-header", p["tiles"], "--labels",
                  work / "class-header.csv", "--encoder", "classic")
    return f"exit {r.code}; {said(r)}"


def case_labels_nomatch(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", work / "lib-nomatch", p["tiles"], "--labels",
                  work / "no-match.csv", "--encoder", "classic")
    return f"exit {r.code}; {said(r)}"


def case_one_pixel(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", work / "lib-pixel", work / "one-pixel.png", "--encoder",
                  "classic")
    return f"exit {r.code}; {said(r)}"


def case_long_report(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", work / "lib-reports", "--reports", work / "reports.csv",
                  "--encoder", "classic")
    return f"exit {r.code}; {said(r)}" + ("" if r.code == 2 else f" ({r.out.strip()})")


def case_typo_path(src: Path, work: Path, p: dict[str, Path]) -> str:
    lib = work / "lib-typo"
    first = histoseek(src, "index", lib, work / "tilse")
    made = "created" if lib.exists() else "not made"
    second = histoseek(src, "index", lib, p["tiles"], "--encoder", "classic")
    then = second.out.strip().splitlines()[-1] if second.code == 0 else said(second)
    return (f"1st: exit {first.code}, library folder {made}, {said(first)}; "
            f"2nd: exit {second.code}, {then}")


def case_settings(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", _built(src, work, p), p["slide"], "--tile", "256",
                  "--target-mpp", "1.0")
    return f"exit {r.code}; {said(r)}"


def case_region_no_mpp(src: Path, work: Path, p: dict[str, Path]) -> str:
    if not TCGA.is_file():
        return "(skipped: ../shared absent)"
    r = histoseek(src, "search", _built(src, work, p), "--region", f"{TCGA}:0,0,2000,2000",
                  "--json", "-k", "1")
    s = histoseek(src, "search", _built(src, work, p), "--slide", TCGA, "--json", "-k", "1")
    return (f"--region exit {r.code}: {said(r) if r.code else 'hits'}; "
            f"--slide exit {s.code}: {said(s) if s.code else 'hits'}")


def case_skipped_formats(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "index", work / "lib-formats", p["tiles"], "--encoder", "classic")
    return f"exit {r.code}; {r.out.strip().splitlines()[-1]}"


def case_group_k(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--region",
                  f"{p['slide']}:900,900,448,448", "--group", "-k", "5", "--json")
    hits = hits_json(r)
    return f"exit {r.code}; {len(hits)} rows ({len({h['path'] for h in hits})} sources)"


def case_kind(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--image", p["query"], "--target",
                  "slides", "-k", "3", "--json")
    return f"exit {r.code}; kinds {[h['kind'] for h in hits_json(r)]}"


def case_score(src: Path, work: Path, p: dict[str, Path]) -> str:
    r = histoseek(src, "search", _built(src, work, p), "--image", p["query"], "-k", "1",
                  "--json")
    hits = hits_json(r)
    return f"exit {r.code}; top score {hits[0]['score']!r}" if hits else said(r)


CASES = [
    Case("`--where lable=normal` (typo in a key)", case_where),
    Case("`--exclude patient=123` (no such key)", case_exclude),
    Case("`--target foo`", case_target),
    Case("`--labels` CSV with header `path,class`", case_labels_header),
    Case("`--labels` CSV whose paths match no file", case_labels_nomatch),
    Case("a 1x1 px image", case_one_pixel),
    Case("reports CSV with one 180k-character report", case_long_report),
    Case("misspelt data path, then `--encoder classic`", case_typo_path),
    Case("adding with `--tile 256 --target-mpp 1.0` to a 224 px / 0.5 mpp library",
         case_settings),
    Case("`--region` vs `--slide` on a slide with no mpp (TCGA)", case_region_no_mpp),
    Case("a PDF inside an indexed folder", case_skipped_formats),
    Case("`--group -k 5` on a region query", case_group_k),
    Case("`--target slides` in a library of JPEG tiles", case_kind),
    Case("self-query score in `--json`", case_score),
]


def run_all(src: Path) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="histoseek-mistakes-"))
    try:
        inputs = setup(work)
        seen = []
        for case in CASES:
            seen.append(case.run(src, work, inputs).replace(str(work), "TMP").replace("|", "\\|"))
            print(f"  {case.name}: {seen[-1]}", file=sys.stderr, flush=True)
        return seen
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="src folder of the version to compare")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    columns = {}
    if args.before:
        print(f"before ({args.before}):", file=sys.stderr)
        columns["before"] = run_all(args.before)
    print("now:", file=sys.stderr)
    columns["now"] = run_all(REPO / "src")
    head = "| mistake | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for i, case in enumerate(CASES):
        lines.append(f"| {case.name} | " + " | ".join(col[i] for col in columns.values()) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
