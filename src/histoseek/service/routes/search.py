"""Search and classify: each calls ``Library.search`` or ``Library.classify`` on the search
thread, as ``histoseek search`` and ``histoseek classify`` do."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from histoseek.library import Library
from histoseek.search.hits import Hit
from histoseek.service.errors import ApiError
from histoseek.service.schemas import (
    ClassifyRequest,
    QueryOptions,
    RegionQuery,
    SlideQuery,
    TextQuery,
)
from histoseek.service.state import Service, ServiceDep
from histoseek.service.uploads import IMAGE_SUFFIX, check_image, temporary_file

router = APIRouter(tags=["search"])


def _options(q: QueryOptions) -> dict[str, Any]:
    return {"k": q.k, "target": q.target, "level": q.level, "group": q.group,
            "where": q.where, "exclude": q.exclude}


async def _answer(service: Service, run: Any, query: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    hits: list[Hit] = await service.search.run(run, service.settings.timeout_s)
    found = await service.look_up(lambda: service.hits_json(hits))
    return {"query": query, "count": len(hits), "hits": found,
            "seconds": round(time.perf_counter() - started, 4)}


@router.post("/search/text", summary="Text → reports (default), tiles or slides")
async def search_text(service: ServiceDep, q: TextQuery) -> dict[str, Any]:
    def run(lib: Library) -> list[Hit]:
        return lib.search(text=q.text, expand=q.expand, **_options(q))

    return await _answer(service, run, q.model_dump())


@router.post("/search/region", summary="A box of an indexed slide → tiles (default) or more")
async def search_region(service: ServiceDep, q: RegionQuery) -> dict[str, Any]:
    row = await service.look_up(lambda: service.catalog.source(q.source))

    def run(lib: Library) -> list[Hit]:
        return lib.search(region=(row["path"], q.x, q.y, q.w, q.h), mpp=q.mpp,
                          include_query_region=q.include_query_region, **_options(q))

    return await _answer(service, run, {**q.model_dump(), "source": row["id"]})


@router.post("/search/slide", summary="An indexed slide → similar slides (default) or tiles")
async def search_slide(service: ServiceDep, q: SlideQuery) -> dict[str, Any]:
    row = await service.look_up(lambda: service.catalog.source(q.source))

    def run(lib: Library) -> list[Hit]:
        return lib.search(slide=row["path"], mpp=q.mpp, exhaustive=q.exhaustive,
                          include_query_region=q.include_query_region,
                          slide_codes=q.slide_codes, **_options(q))

    return await _answer(service, run, {**q.model_dump(), "source": row["id"]})


def _filters(raw: str | None, name: str) -> dict[str, Any] | None:
    """A form field holding a JSON object of filters."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"{name}: malformed JSON ({exc.msg}); give an object such as "
                            '{"label": "polyp"}') from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{name}: must be a JSON object of key: value filters")
    return value


@router.post("/search/image", summary="An uploaded image (a tile) → tiles (default) or more")
async def search_image(
    service: ServiceDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, BMP or WebP")],
    k: Annotated[int, Form(ge=1, le=1000)] = 10,
    target: Annotated[str | None, Form(pattern="^(tiles|slides|reports)$")] = None,
    level: Annotated[str | None, Form(pattern="^(tile|region|slide)$")] = None,
    group: Annotated[bool, Form()] = False,
    where: Annotated[str | None, Form(description="JSON object of filters")] = None,
    exclude: Annotated[str | None, Form(description="JSON object of filters")] = None,
) -> dict[str, Any]:
    data = await file.read()
    kind = check_image(data, service.settings.max_image_pixels, file.filename or "upload")
    filters = {"where": _filters(where, "where"), "exclude": _filters(exclude, "exclude")}

    def run(lib: Library) -> list[Hit]:
        with temporary_file(data, IMAGE_SUFFIX[kind], service.scratch,
                            file.filename or "upload") as path:
            return lib.search(image=path, k=k, target=target, level=level,  # type: ignore[arg-type]
                              group=group, **filters)

    return await _answer(service, run, {"image": file.filename, "format": kind, "k": k,
                                        "target": target, "level": level, "group": group,
                                        **filters})


@router.post("/classify", summary="Zero-shot subtype of an indexed slide (histoseek classify)")
async def classify(service: ServiceDep, q: ClassifyRequest) -> dict[str, Any]:
    row = await service.look_up(lambda: service.catalog.source(q.source))

    def run(lib: Library) -> dict[str, Any]:
        # a list, never a string: a string could name a prompts file on the server
        result = lib.classify(row["path"], q.classes, mpp=q.mpp, top_k=q.top_k,
                              min_margin=q.min_margin, progress=False)
        return {**result.to_dict(), "source": row["id"]}

    return await service.search.run(run, service.settings.timeout_s)
