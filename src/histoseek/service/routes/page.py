"""The web page: ``/`` and its static files (``/static/...``), plain HTML, CSS and ES modules
with OpenSeadragon vendored; no build step. Open even with ``--private``: the page holds no
data, and it sends the token the user types to every read."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
# some systems map .js to text/plain, which browsers refuse for ES modules
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")

router = APIRouter(tags=["page"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], response_class=FileResponse)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
