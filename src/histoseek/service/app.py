"""``create_app(library, settings)``: the FastAPI application over one library folder."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
from fastapi import Depends, FastAPI

from histoseek import __version__
from histoseek.encoders.base import Encoder
from histoseek.errors import InputError
from histoseek.service.access import Catalog, Encoders, SearchWorker, Writer
from histoseek.service.auth import TOKEN_ENV, TOKEN_FILE, read_access, resolve_token
from histoseek.service.deepzoom import DeepZoomCache
from histoseek.service.errors import install_error_handlers
from histoseek.service.paths import resolve_roots
from histoseek.service.routes import pictures, records, search, writes
from histoseek.service.routes.page import install_page
from histoseek.service.settings import ServiceSettings
from histoseek.service.state import Service
from histoseek.service.uploads import BodyLimit

DESCRIPTION = """Search a histoseek library over HTTP: each endpoint calls the same `Library`
method as the matching `histoseek` command. Writes need the service token
(`Authorization: Bearer <token>`); with `--private`, reads need it too. Errors are
`{"error": "...", "status": N}`."""


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_app(library: str | Path, settings: ServiceSettings | None = None, *,
               encoder: Encoder | None = None, text_encoder: Encoder | None = None,
               announce: Callable[[str], None] = _announce) -> FastAPI:
    """The service for ``library``. ``encoder``/``text_encoder`` replace the library's own
    (checked against it; for tests and scripts); a token made now is passed to ``announce``
    once and never again (only its hash is kept, in the library folder)."""
    settings = settings or ServiceSettings()
    root = Path(library)
    try:
        settings = replace(settings, roots=resolve_roots(settings.roots))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    catalog = Catalog(root)  # a LibraryError here if ``library`` is not one
    token, new_token = resolve_token(root, settings.token)
    if new_token is not None:
        announce(f"histoseek serve: a new service token for {root} (shown only now; keep it):\n"
                 f"\n    {new_token}\n\nsend it as 'Authorization: Bearer <token>' to write"
                 f"{' and to read' if settings.private else ''}; only its hash is stored, in "
                 f"{root / TOKEN_FILE} (delete that file to make a new token, or set "
                 f"{TOKEN_ENV})")
    encoders = Encoders(root, settings.device, encoder, text_encoder)
    service = Service(
        library=root, settings=settings, token=token, catalog=catalog,
        search=SearchWorker(encoders), writer=Writer(encoders),
        deepzoom=DeepZoomCache(settings.deepzoom_cache, settings.deepzoom_tile_px,
                               settings.deepzoom_overlap),
        pictures=ThreadPoolExecutor(4, thread_name_prefix="histoseek-pictures"),
        scratch=Path(tempfile.gettempdir()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.scratch = Path(tempfile.mkdtemp(prefix="histoseek-serve-"))
        await anyio.to_thread.run_sync(service.search.warm)  # encoders loaded before serving
        try:
            yield
        finally:  # a running write is finished first (stopping it halfway gains nothing)
            await anyio.to_thread.run_sync(service.close)
            shutil.rmtree(service.scratch, ignore_errors=True)

    app = FastAPI(title="histoseek", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.service = service
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    install_error_handlers(app)
    app.include_router(records.open_router)
    reads = [Depends(read_access)]
    for module in (records, search, pictures):
        app.include_router(module.router, dependencies=reads)
    app.include_router(writes.router)
    install_page(app)  # the web page at / and /static
    return app
