"""Pictures of indexed slides: thumbnails, query heatmaps and Deep Zoom tiles (PNG/JPEG)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from PIL import Image

from histoseek.library import Library
from histoseek.search.arguments import parse_region
from histoseek.service.deepzoom import FORMATS
from histoseek.service.errors import ApiError
from histoseek.service.state import ServiceDep
from histoseek.slides.reader import open_slide

router = APIRouter(tags=["pictures"])
PNG = {"content_type": "image/png", "description": "a PNG picture"}


def _png(pixels: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", optimize=False)
    return out.getvalue()


@router.get("/slides/{source_id:int}.dzi", summary="Deep Zoom descriptor for a viewer",
            response_class=Response)
async def dzi(service: ServiceDep, source_id: int) -> Response:
    def make() -> str:
        row = service.catalog.source(source_id)
        return service.deepzoom.dzi(source_id, row["path"], "jpeg")

    return Response(await service.look_up(make, "Deep Zoom descriptor"),
                    media_type="application/xml")


@router.get("/slides/{source_id:int}_files/{level:int}/{col:int}_{row:int}.{fmt}",
            summary="One Deep Zoom tile (jpeg or png)", response_class=Response)
async def dzi_tile(service: ServiceDep, source_id: int, level: int, col: int, row: int,
                   fmt: str) -> Response:
    def make() -> bytes:
        found = service.catalog.source(source_id)
        return service.deepzoom.tile(source_id, found["path"], level, col, row, fmt)

    tile = await service.look_up(make, "Deep Zoom tile")  # 404 for an unknown format
    return Response(tile, media_type=FORMATS[fmt][1],
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/slides/{source_id:int}/thumbnail.png", summary="The whole slide, downscaled",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def thumbnail(service: ServiceDep, source_id: int,
                    size: Annotated[int, Query(ge=16, description="longer side, px")] = 512
                    ) -> Response:
    if size > service.settings.thumbnail_max_px:
        raise ApiError(400, f"size {size} is more than the service draws "
                            f"({service.settings.thumbnail_max_px} px at most)")

    def make() -> bytes:
        row = service.catalog.source(source_id)
        with open_slide(row["path"]) as slide:
            return _png(slide.thumbnail(size))

    return Response(await service.look_up(make, "thumbnail"), media_type="image/png")


@router.get("/slides/{source_id:int}/heatmap.png",
            summary="The slide's tiles coloured by similarity to a text or region query",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def heatmap(service: ServiceDep, source_id: int,
                  text: Annotated[str | None, Query(max_length=10_000)] = None,
                  region: Annotated[str | None, Query(description=(
                      "SOURCE:x,y,w,h, a box (level-0 px) of an indexed source (id, path, "
                      "file name or sha256)"))] = None,
                  k: Annotated[int, Query(ge=1, le=100, description="boxes drawn")] = 10
                  ) -> Response:
    """Like ``histoseek search --heatmaps``: the query runs against this slide's tiles only;
    its best ``k`` tiles are boxed and numbered by rank."""
    if (text is None) == (region is None):
        raise ApiError(400, "give exactly one of text= or region=SOURCE:x,y,w,h")
    row = await service.look_up(lambda: service.catalog.source(source_id))
    query: dict[str, Any] = {"text": text}
    if region is not None:
        key, x, y, w, h = parse_region(region)
        other = await service.look_up(lambda: service.catalog.source(str(key)))
        query = {"region": (other["path"], x, y, w, h)}

    def run(lib: Library) -> bytes:
        hits = lib.search(**query, k=k, target="tiles", where={"path": row["path"]})
        if not hits:
            raise ApiError(404, f"slide {source_id} has no tiles to draw")
        with tempfile.TemporaryDirectory(dir=service.scratch) as folder:
            title = (f"text query: {text}" if text is not None else f"region query: {region}")
            written = lib.write_heatmaps(hits, Path(folder), title=title)
            return written[0].read_bytes()

    return Response(await service.search.run(run, service.settings.timeout_s),
                    media_type="image/png")
