"""Writes (each needs the token): ingest files from the --root folders, add reports, remove a
source. Each is the CLI's ``Library`` call, on the writer thread, logged to the audit table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from histoseek.ingest.results import IngestReport
from histoseek.library import Library
from histoseek.service.auth import WriteToken
from histoseek.service.errors import ApiError
from histoseek.service.paths import confine
from histoseek.service.schemas import IngestRequest, ReportsRequest
from histoseek.service.state import ServiceDep
from histoseek.service.uploads import check_csv, temporary_file

router = APIRouter(tags=["writes"])


def report_json(report: IngestReport) -> dict[str, Any]:
    return {"summary": report.summary(), "added": report.added, "unchanged": report.unchanged,
            "failed": [{"path": f.path, "problem": f.problem} for f in report.failures],
            "skipped": report.skipped, "notes": report.grouped_notes(), "tiles": report.tiles,
            "seconds": round(report.seconds, 3)}


def _counts(report: IngestReport) -> dict[str, Any]:
    return {"added": len(report.added), "unchanged": len(report.unchanged),
            "failed": len(report.failures), "tiles": report.tiles}


@router.post("/ingest", summary="Index files or folders from the --root folders (histoseek index)")
async def ingest(service: ServiceDep, token_id: WriteToken, body: IngestRequest
                 ) -> dict[str, Any]:
    roots = service.settings.roots

    def confined() -> tuple[list[Path], Path | None]:
        paths = [confine(p, roots) for p in body.paths]
        return paths, None if body.labels is None else confine(body.labels, roots)

    paths, labels = await service.look_up(confined, "path check")

    def write(lib: Library) -> tuple[IngestReport, dict[str, Any]]:
        report = lib.add(paths, labels=labels, mpp=body.mpp, metadata=body.metadata,
                         batch_size=service.settings.ingest_batch_size, progress=False)
        return report, _counts(report)

    report = await service.writer.run(token_id, "ingest", "; ".join(map(str, paths))[:2000],
                                      write)
    return report_json(report)


@router.post("/reports", summary="Add or update reports from a JSON list")
async def add_reports(service: ServiceDep, token_id: WriteToken, body: ReportsRequest
                      ) -> dict[str, Any]:
    items = [r if isinstance(r, str) else r.model_dump(exclude_none=True) for r in body.reports]

    def write(lib: Library) -> tuple[IngestReport, dict[str, Any]]:
        report = lib.add_reports(items)
        return report, _counts(report)

    report = await service.writer.run(token_id, "add_reports", f"{len(items)} reports (JSON)",
                                      write)
    return report_json(report)


@router.post("/reports/csv", summary="Add or update reports from a CSV upload "
                                     "(report_id,text[,source_id,label,...])")
async def add_reports_csv(service: ServiceDep, token_id: WriteToken,
                          file: Annotated[UploadFile, File(description="a UTF-8 CSV")]
                          ) -> dict[str, Any]:
    data = await file.read()
    check_csv(data, file.filename or "upload")

    def write(lib: Library) -> tuple[IngestReport, dict[str, Any]]:
        with temporary_file(data, ".csv", service.scratch, file.filename or "upload") as path:
            report = lib.add_reports(path)
        return report, _counts(report)

    report = await service.writer.run(token_id, "add_reports",
                                      f"CSV upload {file.filename or ''}".strip(), write)
    return report_json(report)


@router.delete("/sources/{key:path}", summary="Remove a source and its tiles, or a report "
                                              "(histoseek remove)")
async def remove(service: ServiceDep, token_id: WriteToken, key: str) -> dict[str, Any]:
    if not key.strip():
        raise ApiError(404, "give the source to remove: DELETE /sources/{id, path, file name, "
                            "sha256 or report_id}")

    def write(lib: Library) -> tuple[dict[str, Any], dict[str, Any]]:
        if not lib.store.find_sources(key) and not lib.store.find_reports(key):
            raise ApiError(404, f"{key}: no such source or report in this library (give an id, "
                                "path, file name, sha256 or report_id)")
        removed = lib.remove(key)
        counts = {"sources": removed.sources, "tiles": removed.tiles,
                  "reports": removed.reports}
        return {"removed": key, **counts}, counts

    return await service.writer.run(token_id, "remove", key, write)
