"""Training data as one self-contained pack: tiles (JPEG bytes), labels, ids, and the frozen
MiniLM embeddings of every knowledge text the losses need.

Building the pack needs the shared data and the text encoder; training needs only the pack,
so the same pack trains on a laptop CPU or a rented GPU with nothing else installed, and a
run is reproducible from it. Only the *training* sources of the split go in. The pack also
records how its tiles were cut and how patient ids were derived (``PackTiling``), so whoever
reads it knows the scale and grouping without assuming the builder's constants.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from histoseek.errors import InputError
from histoseek.slides.tiling import TilingConfig

# How an unlabelled slide's patient id follows from its file name (labelled tiles use the
# labels' ``source_id``). A named rule, so a pack records which one built it.
PATIENT_RULES: dict[str, Callable[[str], str]] = {
    "tcga-barcode": lambda name: name[:12],  # TCGA-XX-XXXX: the patient part of a TCGA name
    "file-name": lambda name: name,  # one patient per slide file
}


@dataclass(frozen=True)
class PackTiling:
    """How a pack's tiles were cut and grouped.

    Labelled images are taken whole and resized to ``tile_px``; unlabelled slides are cut at
    ``target_mpp`` into ``tile_px`` tiles with at least ``min_tissue`` tissue. Every tile is
    stored as a JPEG of ``jpeg_quality``.
    """

    tile_px: int = 224
    target_mpp: float = 0.5
    min_tissue: float = 0.5
    jpeg_quality: int = 72  # keeps train + test packs near 50 MB so they can travel to a GPU box
    patient_rule: str = "tcga-barcode"

    def __post_init__(self) -> None:
        if self.patient_rule not in PATIENT_RULES:
            raise InputError(f"unknown patient_rule '{self.patient_rule}'; expected one of "
                             f"{', '.join(PATIENT_RULES)}")

    def patient_id(self, slide: Path) -> str:
        """The patient an unlabelled slide belongs to, by ``patient_rule``."""
        return PATIENT_RULES[self.patient_rule](Path(slide).name)

    def tiling_config(self) -> TilingConfig:
        """The slide tiler's settings for unlabelled slides."""
        return TilingConfig(target_mpp=self.target_mpp, tile_px=self.tile_px,
                            min_tissue=self.min_tissue)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object], where: object = "pack") -> PackTiling:
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise InputError(f"{where}: tiling record has keys {sorted(data)}, expected "
                             f"{sorted(names)}; rebuild the pack with this histoseek")
        return cls(**data)  # type: ignore[arg-type]


DEFAULT_TILING = PackTiling()
# Packs written before the tiling was recorded were all built with these values (the builder's
# constants since packs exist), so they load as if they had recorded them. Spelled out: a
# change to the defaults above must not change what an old pack claims.
LEGACY_TILING = PackTiling(tile_px=224, target_mpp=0.5, min_tissue=0.5, jpeg_quality=72,
                           patient_rule="tcga-barcode")


@dataclass
class TrainingPack:
    """Everything a run reads. Tile ``i`` has ``label[i]`` (-1: unlabelled) and three ids."""

    jpeg: list[bytes]
    label: np.ndarray  # [n] int64, -1 for unlabelled tiles (self-supervised stage only)
    slide: np.ndarray  # [n] int64 codes
    patient: np.ndarray  # [n] int64 codes
    is_val: np.ndarray  # [n] bool: held-out training sources for model selection
    classes: list[str]
    prompt_emb: np.ndarray  # [C, P, 384] float32, zero-padded
    prompt_mask: np.ndarray  # [C, P] bool
    attribute_emb: np.ndarray  # [C, A, 384]
    attribute_mask: np.ndarray  # [C, A]
    texts: dict[str, dict[str, list[str]]]  # {"prompts": {class: [...]}, "attributes": {...}}
    tiling: PackTiling = DEFAULT_TILING

    def __len__(self) -> int:
        return len(self.jpeg)

    def save(self, path: Path) -> Path:
        offsets = np.cumsum([0] + [len(b) for b in self.jpeg]).astype(np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, jpeg=np.frombuffer(b"".join(self.jpeg), np.uint8), offsets=offsets,
                 label=self.label, slide=self.slide, patient=self.patient, is_val=self.is_val,
                 prompt_emb=self.prompt_emb, prompt_mask=self.prompt_mask,
                 attribute_emb=self.attribute_emb, attribute_mask=self.attribute_mask,
                 meta=np.frombuffer(json.dumps({"classes": self.classes, "texts": self.texts,
                                                "tiling": self.tiling.to_dict()}).encode(),
                                    np.uint8))
        return path

    @classmethod
    def load(cls, path: Path) -> TrainingPack:
        z = _open_pack(path)
        blob, offsets = z["jpeg"].tobytes(), z["offsets"]
        meta = json.loads(z["meta"].tobytes())
        return cls(
            jpeg=[blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)],
            label=z["label"], slide=z["slide"], patient=z["patient"], is_val=z["is_val"],
            classes=meta["classes"], prompt_emb=z["prompt_emb"], prompt_mask=z["prompt_mask"],
            attribute_emb=z["attribute_emb"], attribute_mask=z["attribute_mask"],
            texts=meta["texts"],
            tiling=_tiling_of(meta, path),
        )

    @staticmethod
    def load_tiling(path: Path) -> PackTiling:
        """Only the pack's tiling record (the tiles are not read)."""
        with _open_pack(path) as z:
            return _tiling_of(json.loads(z["meta"].tobytes()), path)


def _open_pack(path: Path) -> np.lib.npyio.NpzFile:
    if not Path(path).is_file():
        raise InputError(f"{path}: no training pack; build it with `histoseek train` "
                         "(it packs the data on first use)")
    return np.load(path)


def _tiling_of(meta: dict, path: Path) -> PackTiling:
    """The recorded tiling; a pack from before the record gets ``LEGACY_TILING``."""
    return PackTiling.from_dict(meta["tiling"], path) if "tiling" in meta else LEGACY_TILING


def encode_jpeg(tile: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def padded_embeddings(groups: list[list[str]], embed: callable) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[valid-type]
    """Embed lists of texts per class into a zero-padded ``[C, P, d]`` array and mask."""
    width = max(len(g) for g in groups)
    flat = [t for g in groups for t in g]
    vectors = embed(flat)
    out = np.zeros((len(groups), width, vectors.shape[1]), np.float32)
    mask = np.zeros((len(groups), width), bool)
    pos = 0
    for c, group in enumerate(groups):
        out[c, : len(group)] = vectors[pos : pos + len(group)]
        mask[c, : len(group)] = True
        pos += len(group)
    return out, mask


def codes(values: np.ndarray) -> np.ndarray:
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def ensure_writable(tile: np.ndarray) -> np.ndarray:
    return tile if tile.flags.writeable else tile.copy()


class TwoViewDataset(TorchDataset):
    """Two independently augmented views of each tile, with its label and ids."""

    def __init__(self, pack: TrainingPack, indices: np.ndarray, transform: callable,  # type: ignore[valid-type]
                 cache_decoded: bool = True) -> None:
        self.pack, self.indices, self.transform = pack, np.asarray(indices), transform
        self._decoded: dict[int, np.ndarray] = {}
        self.cache_decoded = cache_decoded

    def __len__(self) -> int:
        return len(self.indices)

    def _tile(self, i: int) -> np.ndarray:
        if i not in self._decoded:
            tile = decode_jpeg(self.pack.jpeg[i])
            if not self.cache_decoded:
                return tile
            self._decoded[i] = tile
        return self._decoded[i]

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[item])
        tile = ensure_writable(self._tile(i))
        return {
            "view1": self.transform(tile), "view2": self.transform(tile),
            "label": torch.tensor(int(self.pack.label[i])),
            "tile": torch.tensor(i), "slide": torch.tensor(int(self.pack.slide[i])),
            "patient": torch.tensor(int(self.pack.patient[i])),
        }


def progress_decode(pack: TrainingPack, indices: np.ndarray) -> np.ndarray:
    return np.stack([decode_jpeg(pack.jpeg[i]) for i in tqdm(indices, desc="decoding",
                                                                 leave=False)])
