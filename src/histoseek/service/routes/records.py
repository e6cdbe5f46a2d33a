"""Read endpoints over the library's records: health, info, sources, slides, reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from histoseek.service.auth import WriteToken
from histoseek.service.errors import ApiError
from histoseek.service.state import ServiceDep
from histoseek.slides.reader import open_slide

router = APIRouter(tags=["records"])
Limit = Annotated[int | None, Query(ge=1, le=100_000, description="at most this many")]
SQLITE_MAX = 2**63 - 1  # larger integers overflow SQLite's (OFFSET in /reports)
Offset = Annotated[int, Query(ge=0, le=SQLITE_MAX, description="skip this many first")]


@router.get("/info", summary="Counts and settings (histoseek info)")
async def info(service: ServiceDep) -> dict[str, Any]:
    return await service.look_up(lambda: service.catalog.call(lambda lib: lib.info()))


@router.get("/sources", summary="Indexed files (histoseek list)")
async def sources(service: ServiceDep, limit: Limit = None, offset: Offset = 0,
                  kind: Annotated[str | None, Query(pattern="^(slide|image)$")] = None
                  ) -> dict[str, Any]:
    rows = await service.look_up(lambda: service.catalog.call(lambda lib: lib.sources()))
    rows = [r for r in rows if kind is None or r["kind"] == kind]
    return {"total": len(rows), "sources": rows[offset:None if limit is None else offset + limit]}


@router.get("/sources/{key:path}", summary="One source by id, indexed path, file name or sha256")
async def source(service: ServiceDep, key: str) -> dict[str, Any]:
    return await service.look_up(lambda: service.catalog.source(key))


@router.get("/slides", summary="Indexed pyramid slides (sources of kind 'slide')")
async def slides(service: ServiceDep, limit: Limit = None, offset: Offset = 0
                 ) -> dict[str, Any]:
    return await sources(service, limit, offset, "slide")


@router.get("/slides/{source_id:int}", summary="A source with its pyramid and viewer links")
async def slide(service: ServiceDep, source_id: int) -> dict[str, Any]:
    def describe() -> dict[str, Any]:
        row = service.catalog.source(source_id)
        with open_slide(row["path"]) as opened:
            pyramid = {"dimensions": list(opened.dimensions),
                       "level_dimensions": [list(d) for d in opened.level_dimensions],
                       "level_downsamples": list(opened.level_downsamples),
                       "mpp": opened.mpp, "is_pyramid": opened.is_pyramid}
        return {**row, "pyramid": pyramid,
                "links": {"dzi": f"/slides/{source_id}.dzi",
                          "thumbnail": f"/slides/{source_id}/thumbnail.png",
                          "heatmap": f"/slides/{source_id}/heatmap.png"}}

    return await service.look_up(describe)


@router.get("/reports", summary="Indexed reports, oldest first")
async def reports(service: ServiceDep, limit: Limit = 100, offset: Offset = 0
                  ) -> dict[str, Any]:
    def page() -> dict[str, Any]:
        return service.catalog.call(lambda lib: {"total": lib.store.counts()["reports"],
                                                 "reports": lib.reports(limit, offset)})

    return await service.look_up(page)


@router.get("/reports/{report_id}", summary="One report by its report_id")
async def report(service: ServiceDep, report_id: str) -> dict[str, Any]:
    def find(lib: Any) -> list[dict[str, Any]]:
        return list(lib.store.report_rows(lib.store.find_reports(report_id)).values())

    found = await service.look_up(lambda: service.catalog.call(find))
    # find_reports also matches a row id: an exact report_id wins
    match = [r for r in found if r["report_id"] == report_id] or found
    if not match:
        raise ApiError(404, f"{report_id}: no report with this report_id (GET /reports lists "
                            "them)")
    return match[0]


@router.get("/audit", summary="Latest writes through the service (needs the token)")
async def audit(service: ServiceDep, _: WriteToken,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    entries = await service.look_up(
        lambda: service.catalog.call(lambda lib: lib.store.audit_log(limit)))
    return {"entries": entries}


open_router = APIRouter(tags=["service"])


@open_router.get("/health", summary="Liveness and what this service offers (never needs a token)")
async def health(service: ServiceDep) -> dict[str, Any]:
    manifest = service.catalog.lib.manifest
    return {"status": "ok", "library": str(service.library), "encoder": manifest.encoder_name,
            "private": service.settings.private, "ingest": bool(service.settings.roots),
            "max_upload_mb": service.settings.max_upload_mb,
            "timeout_s": service.settings.timeout_s}
