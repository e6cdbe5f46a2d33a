"""The one object each request reaches through ``request.app.state.service``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from histoseek.search.hits import Hit
from histoseek.service.access import Catalog, SearchWorker, Writer, with_timeout
from histoseek.service.auth import TokenCheck
from histoseek.service.deepzoom import DeepZoomCache
from histoseek.service.settings import ServiceSettings

T = TypeVar("T")


@dataclass
class Service:
    library: Path
    settings: ServiceSettings
    token: TokenCheck
    catalog: Catalog
    search: SearchWorker
    writer: Writer
    deepzoom: DeepZoomCache
    pictures: ThreadPoolExecutor  # look-ups, thumbnails, Deep Zoom tiles
    scratch: Path  # private temporary folder (uploads, heatmaps), made at startup

    async def look_up(self, fn: Callable[[], T], what: str = "request") -> T:
        """A quick blocking call (catalog, pixels) off the event loop, within the timeout."""
        return await with_timeout(self.pictures.submit(fn), self.settings.timeout_s, what)

    def hits_json(self, hits: list[Hit]) -> list[dict[str, Any]]:
        """Hits as ``Hit.to_dict``, each (and each of its regions) with ``source``: the
        library's id of its file, for ``/slides/{id}...`` (None for a report without one)."""
        ids = self.catalog.ids_by_path()

        def add(data: dict[str, Any]) -> dict[str, Any]:
            data["source"] = ids.get(data["path"]) if data.get("path") else None
            data["regions"] = [add(r) for r in data.get("regions", [])]
            return data

        return [add(hit.to_dict()) for hit in hits]

    def close(self) -> None:
        self.search.close()
        self.writer.close()
        self.pictures.shutdown(wait=False, cancel_futures=True)
        self.deepzoom.close()
        self.catalog.close()


def _service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]
