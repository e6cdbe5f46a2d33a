"""The service's options, one frozen dataclass: what ``histoseek serve`` flags set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histoseek.errors import InputError


@dataclass(frozen=True)
class ServiceSettings:
    """Options of one service process.

    ``roots``: server folders that ingest may read from (none: ingest is refused).
    ``token``: the bearer token for writes; None reads ``HISTOSEEK_TOKEN`` or the library's
    stored token hash, or makes a new token on first start. ``private``: reads need the token
    too. ``timeout_s`` bounds each search, classification and picture; writes run to the end
    (they are resumable, and stopping one halfway would only waste the work done).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    roots: tuple[Path, ...] = ()
    token: str | None = None
    private: bool = False
    max_upload_mb: float = 20.0
    max_image_pixels: int = 50_000_000  # ~150 MB of RGB once decoded; a tile is 50 k
    timeout_s: float = 60.0
    # tiles per encoder call while ingesting: a search waits for at most one such call
    ingest_batch_size: int = 16
    device: str = "cpu"
    thumbnail_max_px: int = 2048
    deepzoom_tile_px: int = 254
    deepzoom_overlap: int = 1
    deepzoom_cache: int = 8  # open slides kept for the viewer's tile requests

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def __post_init__(self) -> None:
        checks = ((0 <= self.port <= 65535, f"--port {self.port} is not a TCP port"),
                  (self.max_upload_mb > 0, "--max-upload-mb must be positive"),
                  (self.timeout_s > 0, "--timeout must be positive"),
                  (self.max_image_pixels > 0, "max_image_pixels must be positive"),
                  (self.ingest_batch_size > 0, "ingest_batch_size must be positive"))
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise InputError("; ".join(problems))
