"""The body of ``Library.add_reports``: embed new or changed reports in every report space."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.hashing import sha256_text
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.ingest.report_inputs import read_reports
from histoseek.ingest.results import IngestFailure, IngestReport


def add_reports(
    source: str | Path | list[Any], *, store: RecordStore, indexes: SpaceIndexes,
    text_encoder: Callable[[], Encoder], image_encoder: Callable[[], Encoder],
    lock: AbstractContextManager[None],
) -> IngestReport:
    """A report whose id exists with the same text is left alone; changed text replaces it.
    The encoders are loaded only once the input has been read (a bad CSV fails fast)."""
    started = time.perf_counter()
    report = IngestReport(unit="reports")
    inputs = read_reports(source)
    report.failures.extend(IngestFailure(rid, why) for rid, why in inputs.rejected)
    known = store.report_shas()
    todo, shas = [], []
    for rec in inputs.records:
        text = rec.text.strip()
        if not text:
            report.failures.append(IngestFailure(rec.report_id, "report text is empty"))
            continue
        sha = sha256_text(text)
        if known.get(rec.report_id) == sha:
            report.unchanged.append(rec.report_id)
        else:
            todo.append(rec)
            shas.append(sha)
    if todo:
        texts = [r.text for r in todo]
        vectors: dict[VectorSpace, np.ndarray] = {"text": text_encoder().encode_texts(texts)}
        if image_encoder().has_texts:
            vectors["joint"] = image_encoder().encode_texts(texts)
        with lock:
            for space in vectors:
                indexes[space]  # load (and reconcile) before SQLite changes under it
            new_ids, old_ids = store.upsert_reports(todo, shas, vectors)
            for space, matrix in vectors.items():
                if indexes[space].remove(old_ids):
                    indexes[space].add(new_ids, matrix)
                else:  # an index type that cannot remove ids is rebuilt from SQLite
                    indexes.rebuild(space)
                indexes.mark_changed(space)
            indexes.save()
        report.added.extend(r.report_id for r in todo)
    linked = {str(r.metadata["slide_id"]) for r in inputs.records if r.metadata.get("slide_id")}
    unmatched = sorted(linked - set(store.slide_paths(linked)))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        report.notes.append(
            f"{len(unmatched)} of {len(linked)} slide_id values name no slide in this library "
            f"yet ({shown}): those reports link to their slide once it is indexed with that "
            "slide_id (labels CSV) or file name")
    report.seconds = time.perf_counter() - started
    return report
