"""The body of ``Library.add``: discover, stream-encode, commit whole files, checkpoint."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from histoseek.encoders.base import Encoder
from histoseek.errors import InputError
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.store import RecordStore
from histoseek.ingest.discovery import apply_labels, discover, read_labels_csv, with_metadata
from histoseek.ingest.results import IngestFailure, IngestReport
from histoseek.ingest.stream import FileResult, encode_files
from histoseek.slides.tiling import TilingConfig

CHECKPOINT_SECONDS = 60.0  # FAISS files are saved at least this often during a long ingest


def add_files(
    paths: list[str | Path], *, store: RecordStore, indexes: SpaceIndexes, encoder: Encoder,
    tiling: TilingConfig, lock: AbstractContextManager[None], labels: str | Path | None = None,
    mpp: float | None = None, metadata: dict[str, Any] | None = None, batch_size: int = 64,
    progress: bool = True, ray: str | None = None, pretrained: str | None = None,
) -> IngestReport:
    """Index files and folders; a file already in the library (same sha256) is skipped.

    ``ray``: a Ray cluster address (``auto``, ``local``, ``ray://host:10001``) whose workers
    read and encode (``ingest.ray_ingest``); this process still does every write.
    """
    started = time.perf_counter()
    report = IngestReport()
    found = discover([Path(p) for p in paths])
    jobs = found.jobs
    csv_path = None if labels is None else Path(labels).resolve()
    report.skipped = [p.name for p in found.skipped if p.resolve() != csv_path]
    report.failures.extend(IngestFailure(p, m) for p, m in found.problems)
    if not jobs and not found.skipped and found.problems:
        raise InputError("; ".join(m for _, m in found.problems) + ": nothing to index")
    if labels is not None:
        jobs = apply_labels(jobs, read_labels_csv(Path(labels)), Path(labels), report.notes)
    if metadata:
        jobs = with_metadata(jobs, metadata)
    bar = tqdm(total=len(jobs), unit="file", desc="indexing", disable=not progress,
               dynamic_ncols=True)
    last_save = time.monotonic()
    with lock:
        index = indexes["image"]  # after the lock: includes what a writer before us added
        if ray is None:
            groups = encode_files(jobs, encoder, tiling, mpp, store.has_sha,
                                  batch_size=batch_size)
        else:
            from histoseek.ingest.ray_ingest import encode_files_ray

            groups = encode_files_ray(
                jobs, address=ray, encoder_name=encoder.info.name, pretrained=pretrained,
                version=encoder.info.version, tiling=tiling, mpp=mpp, known=store.shas,
                batch_size=batch_size)
        for group in groups:
            # a copy finished elsewhere in this run (or by a retried worker) is written once
            group = [FileResult(r.path, skipped=True) if r.record is not None
                     and store.has_sha(r.record.sha256) else r for r in group]
            records = [r.record for r in group if r.record is not None]
            if records:
                for rec, ids in zip(records, store.insert_sources(records), strict=True):
                    index.add(ids, rec.vectors)
                    report.tiles += len(ids)
                    report.added.append(rec.path)
                indexes.mark_changed("image")
            for res in group:
                if res.skipped:
                    report.unchanged.append(str(res.path))
                elif res.problem:
                    report.failures.append(IngestFailure(str(res.path), res.problem))
                elif res.note:
                    report.notes.append(f"{res.path.name}: {res.note}")
                    continue
                bar.update(1)
            bar.set_postfix(tiles=report.tiles, failed=len(report.failures), refresh=False)
            if time.monotonic() - last_save > CHECKPOINT_SECONDS:
                indexes.save()
                last_save = time.monotonic()
        indexes.save()
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
