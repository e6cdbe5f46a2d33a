"""What a library was built with, fixed at creation: the identity its vectors depend on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from histoseek.errors import LibraryError
from histoseek.index.store import RecordStore
from histoseek.index.vectors import IndexKind

FORMAT_VERSION = 1
MANIFEST_KEYS = ("format_version", "encoder", "text_encoder", "index", "tiling",
                 "index_options", "vector_store")


@dataclass(frozen=True)
class LibraryManifest:
    """The settings stored in a library's ``meta`` table.

    ``encoder`` is the image encoder's ``EncoderInfo`` as a dict plus ``pretrained``;
    ``text_encoder_info`` is filled the first time reports are embedded.
    """

    encoder: dict[str, Any]
    tiling: dict[str, Any]
    index: IndexKind = "flat"
    text_encoder: str = "minilm"
    text_encoder_info: dict[str, Any] | None = None
    index_options: dict[str, int] = field(
        default_factory=lambda: {"ef_search": 128, "nprobe": 16})
    format_version: int = FORMAT_VERSION
    vector_store: dict[str, str] = field(default_factory=lambda: {"kind": "faiss"})

    @property
    def encoder_name(self) -> str:
        return str(self.encoder["name"])

    @property
    def pretrained(self) -> str | None:
        return self.encoder.get("pretrained")

    @property
    def vector_store_uri(self) -> str:
        """``faiss`` or the Milvus URI, as ``--vector-store`` takes it."""
        return self.vector_store.get("uri", "faiss")

    @property
    def dim(self) -> int:
        return int(self.encoder["dim"])

    def differences(self, asked: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{setting: (stored, asked)}`` for the asked settings (tiling fields, index,
        pretrained, encoder) that differ from this library's."""
        stored = {**self.tiling, "index": self.index, "pretrained": self.pretrained,
                  "encoder": self.encoder_name, "vector_store": self.vector_store_uri}
        return {k: (stored.get(k), v) for k, v in asked.items() if stored.get(k) != v}

    def with_vector_store(self, spec: dict[str, str]) -> LibraryManifest:
        return replace(self, vector_store=spec)

    def with_text_encoder_info(self, info: dict[str, Any]) -> LibraryManifest:
        return replace(self, text_encoder_info=info)

    def to_meta(self) -> dict[str, Any]:
        data = asdict(self)
        info = data.pop("text_encoder_info")
        data["text_encoder"] = {"name": self.text_encoder, "info": info}
        return data

    def save(self, store: RecordStore) -> None:
        store.set_meta(self.to_meta())

    @classmethod
    def load(cls, store: RecordStore, where: object) -> LibraryManifest:
        meta = {key: store.get_meta(key) for key in MANIFEST_KEYS}
        if meta["format_version"] is None:
            raise LibraryError(f"{where}: not a histoseek library (no manifest); create it first")
        if meta["format_version"] > FORMAT_VERSION:
            raise LibraryError(
                f"{where}: library format {meta['format_version']} is newer than this histoseek "
                f"reads ({FORMAT_VERSION}); upgrade histoseek")
        text = meta["text_encoder"] or {"name": "minilm", "info": None}
        return cls(encoder=meta["encoder"], tiling=meta["tiling"], index=meta["index"],
                   text_encoder=text["name"], text_encoder_info=text.get("info"),
                   index_options=meta["index_options"], format_version=meta["format_version"],
                   vector_store=meta["vector_store"] or {"kind": "faiss"})
