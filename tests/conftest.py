"""Shared fixtures: made-on-the-spot slides and tiles, the ../shared data, no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from synthetic_images import he_like_pixels, write_pyramid_tiff

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the network: any non-loopback connect fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")
                                      or self.family == socket.AF_UNIX):
            return real_connect(self, address)
        raise OSError(f"network access blocked in tests (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def pyramid_tiff(tmp_path: Path) -> Path:
    """A 2048x1536 synthetic slide at 0.25 mpp with three levels."""
    return write_pyramid_tiff(tmp_path / "synthetic.tif", he_like_pixels(1536, 2048), mpp=0.25)


@pytest.fixture
def pyramid_tiff_no_mpp(tmp_path: Path) -> Path:
    return write_pyramid_tiff(tmp_path / "no_mpp.tif", he_like_pixels(1024, 1024, 1), mpp=None)


@pytest.fixture
def tile_folder(tmp_path: Path) -> Path:
    """An ImageFolder ``DIR/<class>/<file>.png``: three classes of distinct colour and texture."""
    from PIL import Image

    root = tmp_path / "tiles"
    palettes = {"pink": (225, 140, 190), "purple": (120, 70, 160), "pale": (240, 210, 225)}
    for c, (name, colour) in enumerate(palettes.items()):
        (root / name).mkdir(parents=True)
        for i in range(4):
            rng = np.random.default_rng(100 * c + i)
            base = np.array(colour, np.int16) + rng.integers(-12, 12, (224, 224, 3))
            if name == "purple":
                base[::8, :] -= 40
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
                root / name / f"{name}_{i}.png")
    return root


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub access and an empty model cache (for the foundation-model loader tests).

    ``HF_HUB_OFFLINE`` is read once at import, so the constant is patched as well as the
    environment.
    """
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    """Three small random uint8 RGB tiles ``[3, 40, 40, 3]``."""
    return np.random.default_rng(0).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
