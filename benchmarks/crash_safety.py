"""kill -9 tally: SIGKILL an ingest at random moments through the CLI and the service, resume.

    python benchmarks/crash_safety.py --cli-kills 20 --service-kills 8 \
        [--markdown docs/crash-safety.md]

Each cycle starts a fresh library, kills K ingests of the same inputs (48 tiles and two
pyramidal slides, classic encoder, batches of 8 tiles) after a random delay (a quarter
during start-up, the rest while an uninterrupted ingest would be writing), opens the library
as a reader after each kill and runs ``histoseek check`` on it, then lets one last ingest
finish and compares every file's tile vectors with a library built without a kill. Prints
the tally: kills, lost and duplicated records, wrong vectors, and any disagreement between
the index and SQLite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from crash_runs import Tally, kill_cycle, make_inputs, reference_library  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli-kills", type=int, default=20)
    parser.add_argument("--service-kills", type=int, default=8)
    parser.add_argument("--per-cycle", type=int, default=4, help="kills before each resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = make_inputs(work / "inputs")
        reference, timing = reference_library(work / "reference", inputs)
        tiles = sum(len(v) for v in reference.values())
        print(f"inputs: {len(reference)} files, {tiles} tiles; an uninterrupted CLI ingest "
              f"writes from {timing.first_write:.1f} s to {timing.end:.1f} s")
        for via, total in (("cli", args.cli_kills), ("service", args.service_kills)):
            tally, cycle, started = Tally(), 0, time.monotonic()
            while tally.kills < total:
                kills = min(args.per_cycle, total - tally.kills)
                tally.add(kill_cycle(work / f"{via}-{cycle}", inputs, reference, via, kills,
                                     timing, rng))
                cycle += 1
                print(f"  {via}: {tally.kills} kills so far", flush=True)
            rows.append((via, tally, cycle, time.monotonic() - started))
    lines = ["| via | kills | runs | resumes | lost | duplicated | wrong vectors | "
             "index ≠ SQLite | files indexed when killed (of "
             f"{len(reference)}; -1: before the library existed) | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for via, t, cycles, seconds in rows:
        at = sorted(t.files_at_kill)
        lines.append(f"| {via} | {t.kills} | {t.runs} | {cycles} | {t.lost} | {t.duplicated} | "
                     f"{t.wrong_vectors} | {t.disagreements} | {at} | {seconds:.0f} |")
    print("\n".join(lines))
    for _, t, _, _ in rows:
        for failure in t.failures:
            print("FAILURE:", failure)
    if args.markdown:
        args.markdown.write_text(
            "# kill -9 during ingest: the tally\n\n"
            f"`python benchmarks/crash_safety.py --cli-kills {args.cli_kills} --service-kills "
            f"{args.service_kills} --markdown {args.markdown}` ({len(reference)} files, "
            f"{tiles} tiles, classic encoder; a quarter of the kills during start-up, the rest "
            "while an uninterrupted ingest writes).\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
