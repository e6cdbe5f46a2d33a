"""``serve(...)``: run the service with uvicorn (what ``histoseek serve`` calls)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from histoseek.errors import InputError
from histoseek.service.settings import ServiceSettings

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def serve(library: str | Path, settings: ServiceSettings | None = None,
          log_level: str = "info") -> None:
    """Load the library's encoders, then serve it until interrupted.

    Errors in the library or the options (a ``HistoseekError``) surface before the server
    starts, so the CLI prints them as one line.
    """
    missing = [name for name, modules in (("fastapi", ["fastapi"]), ("uvicorn", ["uvicorn"]),
                                          ("python-multipart", ["python_multipart", "multipart"]))
               if not any(importlib.util.find_spec(m) for m in modules)]
    if missing:
        raise InputError(f"histoseek serve needs the serve extra ({', '.join(missing)} not "
                         "installed): pip install 'histoseek[serve]'")
    import uvicorn

    from histoseek.service.app import create_app

    settings = settings or ServiceSettings()
    app = create_app(library, settings)
    app.state.service.search.warm()  # load the encoders now: a bad library fails here, clearly
    if settings.host not in LOOPBACK:
        print(f"warning: serving on {settings.host}, reachable from other machines: writes need "
              "the token, reads only with --private; put TLS in front of it (a reverse proxy)",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level,
                timeout_graceful_shutdown=5)
