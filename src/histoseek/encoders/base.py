"""The encoder contract every registered model meets.

Pixels go in as uint8 ``[n, h, w, 3]`` RGB arrays (what the tiler yields), text as a list of
strings; out come float32 ``[n, dim]`` unit vectors, so inner product is cosine similarity
everywhere downstream (FAISS ``IndexFlatIP``, HNSW, IVF-PQ with inner product).
"""

from __future__ import annotations

from abc import ABC
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from histoseek.errors import EmptyQueryError, InputError, NoTextTowerError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How pixels are prepared for a model; stored in a library so it can refuse a mismatch."""

    input_px: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class EncoderInfo:
    """Identity of an encoder as a library records it: same info, compatible vectors."""

    name: str
    version: str
    dim: int
    modalities: tuple[str, ...]
    preprocess: Preprocess | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        if self.preprocess is not None:
            data["preprocess"]["mean"] = list(self.preprocess.mean)
            data["preprocess"]["std"] = list(self.preprocess.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderInfo:
        pre = data.get("preprocess")
        return cls(
            name=data["name"],
            version=data["version"],
            dim=int(data["dim"]),
            modalities=tuple(data["modalities"]),
            preprocess=None
            if pre is None
            else Preprocess(
                input_px=int(pre["input_px"]),
                mean=tuple(pre["mean"]),
                std=tuple(pre["std"]),
                interpolation=pre.get("interpolation", "bicubic"),
            ),
            extra=dict(data.get("extra") or {}),
        )


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def check_tiles(tiles: np.ndarray) -> np.ndarray:
    """Validate a tile batch: uint8, 4-D, three channels."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise InputError(
            f"tiles must be a uint8 array of shape [n, h, w, 3], got {tiles.dtype} {tiles.shape}"
        )
    return tiles


def check_texts(texts: list[str]) -> list[str]:
    """Reject empty strings early: an empty text has no meaning to embed."""
    if isinstance(texts, str):
        texts = [texts]
    cleaned = [str(t).strip() for t in texts]
    for i, text in enumerate(cleaned):
        if not text:
            raise EmptyQueryError(f"text #{i} is empty: give some words to embed")
    return cleaned


class Encoder(ABC):
    """Base class: subclasses override the towers they have and set ``info``."""

    info: EncoderInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def preprocess(self) -> Preprocess | None:
        return self.info.preprocess

    @property
    def has_images(self) -> bool:
        return "image" in self.info.modalities

    @property
    def has_texts(self) -> bool:
        return "text" in self.info.modalities

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        """Embed uint8 RGB tiles ``[n, h, w, 3]`` to float32 unit vectors ``[n, dim]``.

        Input checks and the empty batch (``[0, dim]``) are handled here once, so a subclass's
        ``_encode_images`` only ever sees a valid, non-empty batch.
        """
        if not self.has_images:
            raise InputError(f"encoder '{self.name}' has no image tower; pick an image encoder")
        tiles = check_tiles(tiles)
        if len(tiles) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._encode_images(tiles)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts to float32 unit vectors ``[n, dim]``; an empty list gives ``[0, dim]``."""
        if not self.has_texts:
            raise NoTextTowerError(
                f"encoder '{self.name}' has no text tower, so it cannot embed text; use a "
                "multimodal encoder (histoseek-base, plip, quiltnet, ...) for text<->image search"
            )
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._encode_texts(texts)

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        """The image tower on a checked, non-empty uint8 batch; image encoders override it."""
        raise NotImplementedError(f"{type(self).__name__} declares an image tower but has none")

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """The text tower on checked, non-empty texts; text encoders override it."""
        raise NotImplementedError(f"{type(self).__name__} declares a text tower but has none")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, "
                f"version={self.info.version!r})")
