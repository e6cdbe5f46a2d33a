"""Load on ``histoseek serve`` over loopback: ``--clients`` (50) concurrent httpx clients for
``--seconds`` (120), then it stops by itself.

The script builds a library from the bundled demo set with ``histoseek index`` (default
encoder histoseek-base, demo tiles with labels, demo reports) unless ``--library`` names one
(a copy is served: ingests change it), starts ``histoseek serve`` on a free loopback port with
``HISTOSEEK_TOKEN`` set and ``--root`` a temp folder, and waits for ``/health``. Each client
loops: text searches (a random pathology phrase, reports or tiles) and image searches (a 224 px
PNG tile upload), 70/30. Beside them, one ingest every ``--ingest-every`` seconds (10): a new
224 px PNG tile (a demo tile, flipped and marked so its sha256 is new) is written into the root
and POSTed to ``/ingest``.

Reported per kind: requests, status codes, requests/s, p50/p99 latency. Errors: any transport
error or non-2xx answer, except 409 for an ingest (another write running: counted apart,
retried later). Records lost: every ingest answered 2xx must be listed by ``GET /sources`` and
by ``Library.open(...).sources()`` after the server stops, and no file may be listed twice.
Then a warm HTTP text search (median of 5) against ``histoseek search LIB --text ... --target
tiles`` (median of 3 runs, wall time of the process), the same query.

    python benchmarks/load_service.py --seconds 120 --json docs/load-service.json \
        --md docs/load-service.md
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "histoseek" / "demo_data"
CLI = "import sys; from histoseek.cli import main; sys.argv[0] = 'histoseek'; main()"
TOKEN = "load-benchmark-token-0123456789"
PHRASES = [
    "adenocarcinoma", "tubular adenoma with low grade dysplasia", "high grade dysplasia",
    "serrated adenoma", "normal colonic mucosa", "hyperplastic polyp", "invasive carcinoma",
    "glandular crowding and nuclear atypia", "mucinous adenocarcinoma", "inflamed mucosa",
    "goblet cells in crypts", "desmoplastic stroma", "signet ring cells", "tumour necrosis",
]
COMPARE_QUERY = "adenocarcinoma"


@dataclass
class Kind:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    expected_409: int = 0

    @property
    def errors(self) -> int:
        bad = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad - self.expected_409 + sum(self.transport_errors.values())

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return None if not lat else round(lat[min(len(lat) - 1, int(p * len(lat)))], 4)

        return {"requests": self.requests, "per_s": round(self.requests / seconds, 2),
                "p50_s": pct(0.50), "p99_s": pct(0.99), "max_s": round(lat[-1], 4) if lat else None,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "transport_errors": dict(self.transport_errors),
                "busy_409": self.expected_409, "errors": self.errors}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          check=False, **kw)


def build_library(lib: Path) -> None:
    proc = cli("index", str(lib), str(DEMO / "tiles"), "--labels",
               str(DEMO / "tiles" / "labels.csv"), "--reports", str(DEMO / "reports.csv"))
    if proc.returncode != 0:
        raise SystemExit(f"histoseek index failed:\n{proc.stderr[-3000:]}")


def demo_tiles() -> list[Image.Image]:
    return [Image.open(p).convert("RGB").resize((224, 224))
            for p in sorted((DEMO / "tiles").glob("*/*.jpg"))]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def new_tile(tiles: list[Image.Image], n: int) -> Image.Image:
    """A demo tile, flipped/rotated, with ``n`` written into its first pixels: a new sha256."""
    image = tiles[n % len(tiles)].transpose(Image.Transpose.ROTATE_90 if n % 2 else
                                            Image.Transpose.FLIP_LEFT_RIGHT).copy()
    for i, byte in enumerate(n.to_bytes(4, "big")):
        image.putpixel((i, 0), (byte, 255 - byte, byte))
    return image


async def wait_healthy(base: str, server: subprocess.Popen, limit_s: float = 600) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.perf_counter() - started < limit_s:
            if server.poll() is not None:
                raise SystemExit(f"histoseek serve exited with {server.returncode}")
            try:
                if (await client.get("/health")).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"histoseek serve did not answer /health within {limit_s:.0f} s")


async def timed(stats: Kind, call: Any, ok_409: bool = False) -> httpx.Response | None:
    started = time.perf_counter()
    stats.requests += 1
    try:
        response = await call()
    except httpx.HTTPError as exc:
        stats.transport_errors[type(exc).__name__] += 1
        return None
    stats.latencies.append(time.perf_counter() - started)
    stats.statuses[response.status_code] += 1
    if response.status_code == 409 and ok_409:
        stats.expected_409 += 1
    return response


async def client_loop(client: httpx.AsyncClient, stats: dict[str, Kind], uploads: list[bytes],
                      deadline: float, rng: random.Random) -> None:
    while time.perf_counter() < deadline:
        if rng.random() < 0.7:
            body = {"text": rng.choice(PHRASES), "k": 10,
                    "target": rng.choice(["reports", "tiles"])}
            await timed(stats["text search"],
                        lambda body=body: client.post("/search/text", json=body))
        else:
            files = {"file": ("tile.png", rng.choice(uploads), "image/png")}
            await timed(stats["image search"],
                        lambda files=files: client.post("/search/image", files=files,
                                                        data={"k": "10"}))


async def ingest_loop(client: httpx.AsyncClient, stats: Kind, root: Path,
                      tiles: list[Image.Image], deadline: float, every: float,
                      ingested: list[str]) -> None:
    n = 0
    pending: list[str] = []  # written, not yet accepted (a 409: retried next time)
    while time.perf_counter() < deadline:
        tick = time.perf_counter()
        name = f"trickle-{n:04d}.png"
        new_tile(tiles, n).save(root / name)
        pending.append(name)
        n += 1
        for name in list(pending):
            response = await timed(stats, lambda name=name: client.post(
                "/ingest", json={"paths": [name]}, headers={"Authorization": f"Bearer {TOKEN}"}),
                ok_409=True)
            if response is not None and 200 <= response.status_code < 300:
                pending.remove(name)
                added = response.json()["added"]
                if not any(str(a).endswith(name) for a in added):
                    stats.transport_errors[f"{name} answered 2xx but not added"] += 1
                ingested.append(name)
        await asyncio.sleep(max(0.0, every - (time.perf_counter() - tick)))


async def run_load(base: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    tiles = demo_tiles()
    rng = random.Random(0)
    uploads = [png(t) for t in rng.sample(tiles, 10)]
    stats = {k: Kind() for k in ("text search", "image search", "ingest")}
    ingested: list[str] = []
    limits = httpx.Limits(max_connections=args.clients + 10,
                          max_keepalive_connections=args.clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=args.request_timeout,
                                 limits=limits) as client:
        started = time.perf_counter()
        deadline = started + args.seconds
        tasks = [client_loop(client, stats, uploads, deadline, random.Random(i + 1))
                 for i in range(args.clients)]
        tasks.append(ingest_loop(client, stats["ingest"], root, tiles, deadline,
                                 args.ingest_every, ingested))
        # bounded: the last requests may run past the deadline by at most one request timeout
        await asyncio.wait_for(asyncio.gather(*tasks), args.seconds + args.request_timeout + 30)
        elapsed = time.perf_counter() - started

        listed = (await client.get("/sources")).json()["sources"]
        warm = []
        body = {"text": COMPARE_QUERY, "target": "tiles", "k": 10}
        await client.post("/search/text", json=body)  # one untimed: the query cache is warm
        for _ in range(5):
            t = time.perf_counter()
            response = await client.post("/search/text", json=body)
            warm.append(time.perf_counter() - t)
            response.raise_for_status()
    return {"elapsed": elapsed, "stats": stats, "ingested": ingested, "listed": listed,
            "warm_http": warm}


def records_check(ingested: list[str], listed: list[dict[str, Any]]) -> dict[str, Any]:
    names = Counter(Path(row["path"]).name for row in listed)
    shas = Counter(row.get("sha256") for row in listed if row.get("sha256"))
    return {"ingested_2xx": len(ingested),
            "lost": sorted(n for n in ingested if names[n] == 0),
            "duplicated_names": sorted(n for n, c in names.items() if c > 1),
            "duplicated_sha256": sorted(s for s, c in shas.items() if c > 1)}


def markdown(result: dict[str, Any]) -> str:
    rows = ["| kind | requests | req/s | p50 (s) | p99 (s) | max (s) | status codes | errors "
            "| busy 409 |", "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for kind, s in result["kinds"].items():
        codes = ", ".join(f"{c}×{n}" for c, n in s["statuses"].items()) or "-"
        if s["transport_errors"]:
            codes += f"; transport {s['transport_errors']}"
        rows.append(f"| {kind} | {s['requests']} | {s['per_s']} | {s['p50_s']} | {s['p99_s']} "
                    f"| {s['max_s']} | {codes} | {s['errors']} | {s['busy_409']} |")
    t = result["total"]
    rows.append(f"| **all** | {t['requests']} | {t['per_s']} | | | | | {t['errors']} | |")
    rec, cmp_ = result["records"], result["cli_vs_http"]
    lost = len(rec["lost"]) + len(rec["lost_in_library"])
    dup = len(rec["duplicated_names"]) + len(rec["duplicated_sha256"])
    return "\n".join([
        f"{result['clients']} clients, {result['seconds_run']:.0f} s on loopback, library "
        f"{result['library_note']}, encoder {result['encoder']}; server ready after "
        f"{result['startup_s']:.1f} s.", "", *rows, "",
        f"Records lost: **{lost}** of {rec['ingested_2xx']} ingests answered 2xx "
        f"(duplicates: {dup}).", "",
        f"Warm HTTP text search (`{cmp_['query']}`, tiles, k=10), median of 5: "
        f"**{cmp_['http_median_s']:.3f} s**; `histoseek search --text ... --target tiles`, "
        f"median of 3 processes: **{cmp_['cli_median_s']:.2f} s**; the CLI takes "
        f"**{cmp_['ratio']:.0f}×** as long."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, help="serve a copy of this library")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--ingest-every", type=float, default=10.0)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="histoseek-load-") as tmp:
        lib, root = Path(tmp) / "lib", Path(tmp) / "root"
        root.mkdir()
        if args.library:
            shutil.copytree(args.library, lib)
            note = f"copy of {args.library}"
        else:
            t = time.perf_counter()
            build_library(lib)
            note = f"demo set (histoseek index, {time.perf_counter() - t:.0f} s to build)"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HISTOSEEK_TOKEN": TOKEN}
        log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", str(lib), "--port", str(port), "--root",
             str(root)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            startup = asyncio.run(wait_healthy(base, server))
            encoder = httpx.get(f"{base}/health").json()["encoder"]
            print(f"server up on {base} after {startup:.1f} s; {args.clients} clients for "
                  f"{args.seconds:.0f} s", file=sys.stderr)
            load = asyncio.run(run_load(base, args, root))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
        server_log = (Path(tmp) / "serve.log").read_text()
        tracebacks = server_log.count("Traceback")

        from histoseek.library import Library

        with Library.open(lib) as opened:
            in_library = opened.sources()
        records = records_check(load["ingested"], load["listed"])
        after = records_check(load["ingested"], in_library)
        records["lost_in_library"] = after["lost"]
        records["duplicated_sha256"] = sorted({*records["duplicated_sha256"],
                                               *after["duplicated_sha256"]})
        records["sources_after"] = len(in_library)

        cli_times = []
        for _ in range(4):  # the first is an untimed warm-up (page cache, .pyc)
            t = time.perf_counter()
            proc = cli("search", str(lib), "--text", COMPARE_QUERY, "--target", "tiles",
                       "-k", "10")
            cli_times.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise SystemExit(f"histoseek search failed:\n{proc.stderr[-2000:]}")
        cli_times = cli_times[1:]

    elapsed = load["elapsed"]
    kinds = {k: s.summary(elapsed) for k, s in load["stats"].items()}
    total_requests = sum(s["requests"] for s in kinds.values())
    http_med, cli_med = statistics.median(load["warm_http"]), statistics.median(cli_times)
    result = {
        "clients": args.clients, "seconds_asked": args.seconds, "seconds_run": elapsed,
        "ingest_every_s": args.ingest_every, "library_note": note, "encoder": encoder,
        "startup_s": startup, "cpu_count": os.cpu_count(), "kinds": kinds,
        "total": {"requests": total_requests, "per_s": round(total_requests / elapsed, 2),
                  "errors": sum(s["errors"] for s in kinds.values())},
        "records": records, "server_log_tracebacks": tracebacks,
        "cli_vs_http": {"query": COMPARE_QUERY, "http_s": load["warm_http"],
                        "http_median_s": http_med, "cli_s": cli_times, "cli_median_s": cli_med,
                        "ratio": cli_med / http_med},
    }
    text = markdown(result)
    print(text)
    if tracebacks:
        print(f"\nserver log: {tracebacks} tracebacks", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text("# Load on `histoseek serve`\n\n`python benchmarks/load_service.py "
                           f"--seconds {args.seconds:.0f}`\n\n{text}\n")
    lost = len(records["lost"]) + len(records["lost_in_library"])
    sys.exit(1 if result["total"]["errors"] or lost else 0)


if __name__ == "__main__":
    main()
