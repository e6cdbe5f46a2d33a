"""Latency of one ``histoseek search`` from the shell: wall time and where it goes.

Builds a small library from the bundled demo set once (in a temp dir, default encoder
histoseek-base, with the demo reports), then, each in a fresh process and repeated ``-n``
times (median and min):

- wall time of ``histoseek search LIB --image TILE -k 5``, ``--text adenocarcinoma`` (reports),
  ``--text ... --target tiles`` (both towers) and ``--image ... --json``;
- a phase breakdown of the image and text searches inside one process
  (``benchmarks/cli_phases.py``: ``time.perf_counter`` spans around the calls a search makes);
- the heaviest imports of a search, from ``python -X importtime``.

``--before DIR`` measures another checkout's ``src`` (``PYTHONPATH`` override, its own library
built by its own code) interleaved with this one, run by run, so load on the machine hits both
alike; ``--src DIR`` measures only DIR. One untimed warm-up run per command comes first, so
``.pyc`` files and the page cache are as warm as for a user's second search.

    python benchmarks/bench_cli_latency.py --before /tmp/before/src -n 5 --out cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "histoseek" / "demo_data"
PHASES_SCRIPT = Path(__file__).with_name("cli_phases.py")
# the console script's body: `histoseek ...` runs exactly this
CLI = "import sys; from histoseek.cli import main; sys.argv[0] = 'histoseek'; main()"

PHASE_ROWS = [
    "python start", "import histoseek.cli", "import Library module", "typer dispatch",
    "Library.open", "image encoder creation", "  of which imports", "  of which sha256",
    "  of which build model + load weights", "text encoder creation",
    "  of which imports ", "FAISS index load", "  of which reading the .faiss file",
    "query encode", "search (rank, rows, hits)", "  of which knowledge tree load", "close",
    "print", "interpreter exit", "other (instrumentation, unaccounted)", "total (wall)",
]


def search_commands(lib: Path) -> dict[str, list[str]]:
    tile = sorted((DEMO / "tiles" / "adenocarcinoma").glob("*.jpg"))[0]
    return {
        "image": ["search", str(lib), "--image", str(tile), "-k", "5"],
        "text (reports)": ["search", str(lib), "--text", "adenocarcinoma", "-k", "5"],
        "text (tiles)": ["search", str(lib), "--text", "adenocarcinoma", "--target", "tiles",
                         "-k", "5"],
        "image --json": ["search", str(lib), "--image", str(tile), "-k", "5", "--json"],
    }


THREADS: str | None = None  # --threads: OMP_NUM_THREADS for every child


def env_for(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    if THREADS:
        env["OMP_NUM_THREADS"] = THREADS
    return env


def run_child(command: list[str], src: Path) -> None:
    """Run one child process; a failure stops the benchmark with the child's own error."""
    proc = subprocess.run(command, env=env_for(src), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"failed with {src}: {shlex.join(command[1:])}\n{proc.stderr[-3000:]}")


def build_library(src: Path, lib: Path) -> None:
    """The demo tiles (with labels) and reports, indexed by ``src``'s own code."""
    run_child([sys.executable, "-c", CLI, "index", str(lib), str(DEMO / "tiles"),
               "--labels", str(DEMO / "tiles" / "labels.csv"),
               "--reports", str(DEMO / "reports.csv")], src)


def wall_time(src: Path, args: list[str]) -> float:
    start = time.perf_counter()
    run_child([sys.executable, "-c", CLI, *args], src)
    return time.perf_counter() - start


def phase_run(src: Path, args: list[str], tmp: Path) -> dict[str, float]:
    """One instrumented search; seconds per row of ``PHASE_ROWS``."""
    out = tmp / "phases.json"
    spawn = time.time()
    run_child([sys.executable, str(PHASES_SCRIPT), repr(spawn), str(out), *args], src)
    done = time.time()
    data = json.loads(out.read_text())
    if not data["histoseek_file"].startswith(str(src)):
        raise SystemExit(f"measured {data['histoseek_file']}, not {src}: PYTHONPATH ignored?")
    return tabulate(data, done - spawn, done - data["end_wall"])


def tabulate(data: dict, wall: float, exit_s: float) -> dict[str, float]:
    """Spans to rows: phase spans count exclusive of nested phases; notes say 'of which'."""
    spans, marks = data["spans"], data["marks"]
    rows = dict.fromkeys(PHASE_ROWS, 0.0)
    nested = [0.0] * len(spans)
    for span in spans:
        if span["kind"] == "phase" and span["phase"] is not None:
            nested[span["phase"]] += span["end"] - span["start"]

    def phase_label(index: int | None) -> str | None:
        return None if index is None else spans[index]["label"]

    for i, span in enumerate(spans):
        length = span["end"] - span["start"]
        owner = phase_label(span["phase"])
        if span["kind"] == "phase":
            rows[span["label"]] = rows.get(span["label"], 0.0) + length - nested[i]
        elif span["kind"] == "import" and not _inside_import(spans, i):
            if owner == "image encoder creation":
                rows["  of which imports"] += length
            elif owner == "text encoder creation":
                rows["  of which imports "] += length
        elif span["label"] == "sha256 of a file" and owner == "image encoder creation":
            rows["  of which sha256"] += length
        elif span["label"] == "build model + load weights":
            rows["  of which build model + load weights"] += length
        elif span["label"] == "read .faiss file":
            rows["  of which reading the .faiss file"] += length
        elif span["label"] == "knowledge tree load":
            rows["  of which knowledge tree load"] += length
    first_open = min((s["start"] for s in spans if s["label"] == "Library.open"),
                     default=marks["app_end"])
    rows["typer dispatch"] = first_open - marks["app_start"]
    last_close = max((s["end"] for s in spans if s["label"] == "close"),
                     default=marks["app_end"])
    rows["print"] = marks["app_end"] - last_close
    rows["python start"] = data["t0_wall"] - data["spawn_wall"]
    rows["interpreter exit"] = exit_s
    rows["total (wall)"] = wall
    counted = sum(v for k, v in rows.items() if not k.startswith("  ") and k != "total (wall)")
    rows["other (instrumentation, unaccounted)"] = wall - counted
    return rows


def _inside_import(spans: list[dict], i: int) -> bool:
    me = spans[i]
    return any(s["kind"] == "import" and s["start"] < me["start"] and s["end"] > me["end"]
               for s in spans[:i])


def heaviest_imports(src: Path, args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """Top-level packages (and histoseek modules) by cumulative ``-X importtime`` seconds."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", CLI, *args],
                          env=env_for(src), check=True, capture_output=True, text=True)
    best: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        name = m[3]
        key = name if name.startswith("histoseek") else name.partition(".")[0]
        if name.startswith("histoseek") or name == key:
            best[key] = max(best.get(key, 0.0), int(m[1]) / 1e6)
    return sorted(best.items(), key=lambda kv: -kv[1])[:top]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values)}


def measure(srcs: dict[str, Path], repeats: int, work: Path) -> dict:
    """Every measurement for every checkout, interleaved run by run."""
    libs = {}
    for name, src in srcs.items():
        libs[name] = work / f"lib-{name}"
        print(f"[{name}] building the demo library with {src}", file=sys.stderr)
        build_library(src, libs[name])
    commands = {name: search_commands(libs[name]) for name in srcs}
    kinds = list(commands[next(iter(srcs))])
    walls = {name: {kind: [] for kind in kinds} for name in srcs}
    phases = {name: {kind: [] for kind in ("image", "text (reports)")} for name in srcs}
    for name, src in srcs.items():  # warm-up: .pyc files, page cache
        for kind in kinds:
            wall_time(src, commands[name][kind])
    for r in range(repeats):
        print(f"repeat {r + 1}/{repeats}", file=sys.stderr)
        for kind in kinds:
            for name, src in srcs.items():
                walls[name][kind].append(wall_time(src, commands[name][kind]))
        for kind in phases[next(iter(srcs))]:
            for name, src in srcs.items():
                phases[name][kind].append(phase_run(src, commands[name][kind], work))
    imports = {name: {kind: heaviest_imports(src, commands[name][kind])
                      for kind in ("image", "text (reports)")} for name, src in srcs.items()}
    return {"sources": {k: str(v) for k, v in srcs.items()}, "repeats": repeats,
            "omp_num_threads": THREADS,
            "wall": walls, "phases": phases, "imports": imports}


def print_report(result: dict) -> None:
    names = list(result["sources"])
    head = " | ".join(f"{n} median | {n} min" for n in names)
    change = " | change (median)" if len(names) == 2 else ""
    print(f"\n### Wall time of one `histoseek search` (s), {result['repeats']} runs each\n")
    print(f"| command | {head}{change} |")
    print("|---" * (1 + 2 * len(names) + (len(names) == 2)) + "|")
    kinds = list(result["wall"][names[0]])
    for kind in kinds:
        stats = [summary(result["wall"][n][kind]) for n in names]
        cells = " | ".join(f"{s['median']:.2f} | {s['min']:.2f}" for s in stats)
        diff = (f" | {stats[1]['median'] - stats[0]['median']:+.2f}" if len(names) == 2
                else "")
        print(f"| {kind} | {cells}{diff} |")
    for kind in result["phases"][names[0]]:
        print(f"\n### Phases of `{kind}` search in one process (s, median of "
              f"{result['repeats']})\n")
        print("| phase | " + " | ".join(names) + " |")
        print("|---" * (1 + len(names)) + "|")
        for row in PHASE_ROWS:
            values = [statistics.median(run[row] for run in result["phases"][n][kind])
                      for n in names]
            label = row.rstrip().replace("  ", "&nbsp;&nbsp;")
            print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    for name in names:
        for kind, top in result["imports"][name].items():
            listed = ", ".join(f"{mod} {sec:.2f}" for mod, sec in top)
            print(f"\nheaviest imports, {name}, {kind} (`-X importtime`, cumulative s): "
                  f"{listed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the checkout's src to measure (default: this one)")
    parser.add_argument("--before", type=Path, help="another checkout's src, measured too")
    parser.add_argument("-n", "--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write every sample as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep libraries here (default: temp)")
    parser.add_argument("--threads", help="OMP_NUM_THREADS for the searches (default: unset; "
                        "1 shows the phases without thread contention on a busy machine)")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    srcs = {"after": args.src.resolve()} if args.before else {"run": args.src.resolve()}
    if args.before:
        srcs = {"before": args.before.resolve(), **srcs}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="histoseek-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(srcs, args.repeats, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_report(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
