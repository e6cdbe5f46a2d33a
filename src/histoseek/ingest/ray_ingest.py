"""Ingest fanned out over Ray: workers read, tile and encode files; the driver writes.

Each new file is one Ray task (``num_cpus=1``) that runs the same streamed read-and-encode
as a local ingest and returns the finished record with its vectors. Only the driver writes,
through the library's one writer, so a record lands exactly once: when a worker dies, Ray
runs its task again (``max_retries``) and nothing of the lost attempt was written; a file
whose sha256 is already in the library is skipped (and the column is UNIQUE besides).

``HISTOSEEK_FAULT_KILL_WORKER_ONCE=PATH`` is a fault-injection hook for the reliability
tests: the first task to create PATH kills its own worker with SIGKILL after encoding,
before returning, so the retry must redo the whole file.
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


def _encode_job(job: FileJob, encoder_name: str, pretrained: str | None, version: str,
                tiling: TilingConfig, mpp: float | None, batch_size: int,
                known: frozenset[str]) -> list[FileResult]:
    """One file, on a worker: the local streamed ingest, with the worker's own encoder."""
    from histoseek.encoders.registry import create_encoder

    key = (encoder_name, pretrained)
    if key not in _worker_encoders:
        _worker_encoders[key] = create_encoder(encoder_name, pretrained=pretrained, device="cpu")
    encoder = _worker_encoders[key]
    if encoder.info.version != version:
        return [FileResult(job.path, problem=(
            f"{job.path}: the Ray worker loaded {encoder_name} {encoder.info.version}, but the "
            f"library holds {version} vectors; install the same weights on every worker"))]
    results = [r for group in encode_files([job], encoder, tiling, mpp, known.__contains__,
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
    window = max(2, int(ray.cluster_resources().get("CPU", 1)) * IN_FLIGHT_PER_CPU)
    waiting = list(jobs)
    running: dict[Any, FileJob] = {}
    while waiting or running:
        while waiting and len(running) < window:
            job = waiting.pop(0)
            running[task.remote(job, encoder_name, pretrained, version, tiling, mpp,
                                batch_size, known_ref)] = job
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            job = running.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as exc:
                yield [FileResult(Path(job.path), problem=(
                    f"{job.path}: failed on the Ray cluster after {MAX_RETRIES} retries "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"))]
