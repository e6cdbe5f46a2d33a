"""Ingest fanned out over Ray: workers read, tile and encode files; the driver writes.

Each Ray task (``num_cpus=1``) takes a slide, or a group of small files (pre-cut tiles: one
task each would cost more in scheduling than in encoding), runs the same streamed
read-and-encode as a local ingest and returns the finished records with their vectors. Only
the driver writes, through the library's one writer, so a record lands exactly once: when a
worker dies, Ray runs its task again (``max_retries``) and nothing of the lost attempt was
written; a file whose sha256 is already in the library is skipped (the column is UNIQUE too).

``HISTOSEEK_FAULT_KILL_WORKER_ONCE=PATH`` is a fault-injection hook for the reliability
tests: the first task to create PATH kills its own worker with SIGKILL after encoding,
before returning, so the retry must redo all of that task's files.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from histoseek.errors import InputError
from histoseek.ingest.discovery import FileJob
from histoseek.ingest.stream import FileResult, encode_files
from histoseek.slides.tiling import TilingConfig

MAX_RETRIES = 3  # a task whose worker dies is run again this many times
IN_FLIGHT_PER_CPU = 2  # tasks queued per cluster CPU: enough to keep workers busy
TASK_BYTES = 64 << 20  # small files are grouped into tasks of about this many bytes...
TASK_FILES = 256  # ...or this many files
FAULT_ENV = "HISTOSEEK_FAULT_KILL_WORKER_ONCE"

_worker_encoders: dict[tuple[str, str | None], Any] = {}


def connect_ray(address: str) -> Any:
    """Join the cluster at ``address`` (``auto``: the one started by ``ray start`` on this
    machine; ``local``: start a private one here), or the one this process already joined."""
    try:
        import ray
    except ImportError as exc:
        raise InputError("--ray needs Ray: pip install 'histoseek[ray]'") from exc
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address,
                     include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot join the Ray cluster at '{address}': {exc}") from exc
    return ray


def task_groups(jobs: list[FileJob], workers: int) -> list[list[FileJob]]:
    """Consecutive files grouped up to ``TASK_BYTES`` / ``TASK_FILES``, and into at least
    ``workers`` groups where there are that many files, so every worker gets some."""
    files = max(1, min(TASK_FILES, -(-len(jobs) // max(1, workers))))
    groups: list[list[FileJob]] = []
    size = 0
    for job in jobs:
        try:
            nbytes = job.path.stat().st_size
        except OSError:
            nbytes = 0  # the task reports the problem
        if not groups or len(groups[-1]) >= files or size + nbytes > TASK_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(job)
        size += nbytes
    return groups


def _encode_job(jobs: list[FileJob], encoder_name: str, pretrained: str | None, version: str,
                tiling: TilingConfig, mpp: float | None, batch_size: int,
                known: frozenset[str]) -> list[FileResult]:
    """Files, on a worker: the local streamed ingest, with the worker's own encoder."""
    from histoseek.encoders.registry import create_encoder

    key = (encoder_name, pretrained)
    if key not in _worker_encoders:
        _worker_encoders[key] = create_encoder(encoder_name, pretrained=pretrained, device="cpu")
    encoder = _worker_encoders[key]
    if encoder.info.version != version:
        return [FileResult(job.path, problem=(
            f"{job.path}: the Ray worker loaded {encoder_name} {encoder.info.version}, but the "
            f"library holds {version} vectors; install the same weights on every worker"))
            for job in jobs]
    results = [r for group in encode_files(jobs, encoder, tiling, mpp, known.__contains__,
                                           batch_size=batch_size, prefetch=2) for r in group]
    marker = os.environ.get(FAULT_ENV)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return results


def encode_files_ray(
    jobs: list[FileJob], *, address: str, encoder_name: str, pretrained: str | None,
    version: str, tiling: TilingConfig, mpp: float | None, known: Callable[[], set[str]],
    batch_size: int = 64,
) -> Iterator[list[FileResult]]:
    """Like ``stream.encode_files``: groups of finished files, as their tasks complete."""
    ray = connect_ray(address)
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_encode_job)
    known_ref = ray.put(frozenset(known()))
    workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    waiting = task_groups(jobs, workers)
    waiting.reverse()  # pop() from the end keeps the files' order
    running: dict[Any, list[FileJob]] = {}
    while waiting or running:
        while waiting and len(running) < workers * IN_FLIGHT_PER_CPU:
            group = waiting.pop()
            running[task.remote(group, encoder_name, pretrained, version, tiling, mpp,
                                batch_size, known_ref)] = group
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            group = running.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as exc:
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                yield [FileResult(Path(job.path), problem=(
                    f"{job.path}: failed on the Ray cluster after {MAX_RETRIES} retries "
                    f"({why})")) for job in group]
