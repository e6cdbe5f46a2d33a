"""``phikon`` and ``plip`` through transformers, plus the weight-source helpers that the timm
and open_clip factories share (where ``pretrained`` points, a fast hub check, weight digests).

``pretrained`` is a hub id (``owkin/phikon`` or ``hf-hub:owkin/phikon``) or a local folder
written by ``save_pretrained`` (config, weights and the image processor / tokenizer files).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from histoseek.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    EncoderInfo,
    Preprocess,
    check_texts,
    check_tiles,
    l2_normalise,
)
from histoseek.errors import WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from histoseek.encoders.registry import EncoderSpec

HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


# --- where the weights are -----------------------------------------------------------------
@dataclass(frozen=True)
class WeightsSource:
    """A parsed ``pretrained`` value: a hub repo (with optional revision), a folder or a file."""

    kind: Literal["hub", "dir", "file"]
    location: str  # repo id for "hub", absolute path otherwise
    revision: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def hub_id(self) -> str:
        """``org/name`` or ``org/name@revision``, the form timm's ``hf-hub:`` prefix takes."""
        return self.location if self.revision is None else f"{self.location}@{self.revision}"


def parse_pretrained(pretrained: str | None, label: str, bare_hub_ids: bool) -> WeightsSource:
    """Decide whether ``pretrained`` is a hub id, a folder or a file; fail on a missing path.

    ``bare_hub_ids`` lets ``org/name`` (no prefix) mean the hub when no such path exists, as
    transformers users expect; timm and open_clip names need the explicit ``hf-hub:`` prefix.
    """
    if not pretrained or not str(pretrained).strip():
        raise WeightsNotFoundError(
            f"encoder '{label}' needs weights: pass pretrained=<hub id or local folder or file>"
        )
    text = str(pretrained).strip()
    if text.startswith(HUB_PREFIX):
        repo, _, revision = text[len(HUB_PREFIX) :].partition("@")
        if not repo:
            raise WeightsNotFoundError(f"'{text}': no repository after '{HUB_PREFIX}'")
        return WeightsSource("hub", repo, revision or None)
    if text.startswith(LOCAL_DIR_PREFIX):
        text = text[len(LOCAL_DIR_PREFIX) :]
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSource("dir", str(path.resolve()))
    if path.is_file():
        return WeightsSource("file", str(path.resolve()))
    if bare_hub_ids and not path.is_absolute() and _HUB_ID.fullmatch(text):
        repo, _, revision = text.partition("@")
        return WeightsSource("hub", repo, revision or None)
    raise WeightsNotFoundError(
        f"{path}: no such file or folder with weights for encoder '{label}'; pass an existing "
        f"folder or weights file, or a hub id written as '{HUB_PREFIX}org/name'"
    )


def check_hub_access(source: WeightsSource, filename: str, label: str) -> None:
    """Fail at once, with the next step, when the hub cannot serve ``filename``.

    huggingface_hub retries a failed download 5 times with back-off (~25 s a file offline);
    one HEAD without retries answers at once and tells gated, missing and unreachable apart.
    A file already in the local cache passes without a request, so cached models load offline.
    """
    from huggingface_hub import (
        constants,
        errors,
        get_hf_file_metadata,
        hf_hub_url,
        try_to_load_from_cache,
    )
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub >= 1.0 splits the remote case out of EntryNotFoundError.
    missing_file = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)

    repo, revision = source.location, source.revision
    if isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
        return
    url = hf_hub_url(repo, filename, revision=revision, endpoint=constants.ENDPOINT)
    try:
        get_hf_file_metadata(url, timeout=10)
        return
    except GatedRepoError as exc:
        error, problem = exc, "is gated and this machine has not been granted access"
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        error, problem = exc, "is not on the Hugging Face hub (wrong id or revision, or private)"
    except missing_file as exc:
        error, problem = exc, f"has no {filename}, so it is not a model this encoder loads"
    except OfflineModeIsEnabled as exc:
        error, problem = exc, "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    except Exception as exc:  # network errors come from httpx, OS and TLS layers alike
        error, problem = exc, f"cannot be fetched: the Hugging Face hub is unreachable ({exc})"
    raise WeightsNotFoundError(
        f"{HUB_PREFIX}{source.hub_id} (encoder '{label}') {problem}. To get the weights: "
        f"accept the model's licence at https://huggingface.co/{repo} if it is gated, log in "
        f"with `hf auth login` (older huggingface_hub: `huggingface-cli login`) or set "
        f"HF_TOKEN, and run with network access; or download the files elsewhere and pass "
        f"pretrained=<local folder or weights file>"
    ) from error


def weight_files(folder: Path, preferred: Sequence[str]) -> list[Path]:
    """The weight file(s) a loader picks in ``folder``: a preferred name, else one suffix class.

    Several files of one suffix (a sharded checkpoint) are all returned, sorted.
    """
    for name in preferred:
        if (folder / name).is_file():
            return [folder / name]
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
        if found:
            return found
    return []


def sha256_version(files: Sequence[Path]) -> str:
    """Digest the weight bytes: same weights, same version, whether from the hub or a copy."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def local_version(source: WeightsSource, preferred: Sequence[str], label: str) -> str:
    """The digest of the weights a local folder or file holds."""
    files = [source.path] if source.kind == "file" else weight_files(source.path, preferred)
    if not files:
        raise WeightsNotFoundError(
            f"{source.path}: no weights file ({', '.join(WEIGHT_SUFFIXES)}) in this folder for "
            f"encoder '{label}'; put the downloaded weights there or pass the file itself"
        )
    return sha256_version(files)


def hub_version(source: WeightsSource, preferred: Sequence[str]) -> str:
    """Version of a hub model once loaded: the digest of its cached weights, else its id."""
    from huggingface_hub import try_to_load_from_cache

    for name in preferred:
        cached = try_to_load_from_cache(source.location, name, revision=source.revision)
        if isinstance(cached, str):
            return sha256_version([Path(cached)])
    return f"{HUB_PREFIX}{source.hub_id}"


def weights_version(source: WeightsSource, preferred: Sequence[str], label: str) -> str:
    """The version an ``EncoderInfo`` records for weights from ``source``."""
    if source.kind == "hub":
        return hub_version(source, preferred)
    return local_version(source, preferred, label)


def interpolation_name(value: Any) -> str:
    """Map a PIL resample code or a library's name to a mode ``tiles_to_tensor`` can run."""
    value = getattr(value, "value", value)
    if isinstance(value, str):
        name = value.lower()
        return name if name in ("bilinear", "bicubic") else "bicubic"
    return "bilinear" if value == 2 else "bicubic"  # PIL: 2 bilinear, 3 bicubic, others rare


def load_or_raise(
    load: Callable[[], Any], source: WeightsSource, label: str, what: str = "weights"
) -> Any:
    """Run a library loader and turn any failure into one ``WeightsNotFoundError`` line."""
    try:
        return load()
    except WeightsNotFoundError:
        raise
    except Exception as exc:  # loaders raise OSError, RuntimeError, ValueError, AssertionError
        where = f"{HUB_PREFIX}{source.hub_id}" if source.kind == "hub" else source.location
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsNotFoundError(
            f"{where}: cannot load the {what} of encoder '{label}' ({first}); check that the "
            f"folder or file holds this model's files as its hub repository has them"
        ) from exc


# --- transformers models -------------------------------------------------------------------
def _check_loading(info: dict[str, Any], source: WeightsSource, label: str) -> None:
    """transformers fills missing weights with random ones and only logs it; refuse that."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        keys = ", ".join((missing + mismatched)[:5])
        raise WeightsNotFoundError(
            f"{source.location}: the checkpoint does not fit encoder '{label}' (missing or "
            f"mismatched weights: {keys}, ...); pass this model's own weights"
        )


def _hf_preprocess(processor: Any, fallback_px: int) -> Preprocess:
    """Read size, mean, std and resampling from a transformers image processor."""
    cropped = getattr(processor, "do_center_crop", False)
    size = (getattr(processor, "crop_size", None) if cropped else None) or processor.size
    px = None
    if size is not None:
        get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
        px = get("height") or get("shortest_edge")
    return Preprocess(
        input_px=int(px or fallback_px),
        mean=tuple(float(v) for v in (processor.image_mean or IMAGENET_MEAN)),
        std=tuple(float(v) for v in (processor.image_std or IMAGENET_STD)),
        interpolation=interpolation_name(getattr(processor, "resample", "bicubic")),
    )


def _from_pretrained(
    cls: Any, source: WeightsSource, label: str, what: str, **kwargs: Any
) -> Any:
    """Call ``cls.from_pretrained`` on a folder or a (checked) hub id, wrapping failures."""
    if source.kind == "file":
        raise WeightsNotFoundError(
            f"{source.path}: encoder '{label}' loads a transformers folder (config.json and "
            f"weights, as save_pretrained writes it), not a single file; pass the folder"
        )
    if source.kind == "hub":
        check_hub_access(source, "config.json", label)
        kwargs["revision"] = source.revision
    else:
        kwargs["local_files_only"] = True
    return load_or_raise(
        lambda: cls.from_pretrained(source.location, **kwargs), source, label, what
    )


def _load_model(cls: Any, source: WeightsSource, label: str, model_type: str, **kw: Any) -> Any:
    """Load a model after checking its config names the right family (before any weights)."""
    import torch
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, source, label, "config (config.json)")
    if getattr(config, "model_type", None) != model_type:
        raise WeightsNotFoundError(
            f"{source.location}: holds a '{getattr(config, 'model_type', '?')}' model, but "
            f"encoder '{label}' needs a '{model_type}' one; pass this encoder's weights"
        )
    model, info = _from_pretrained(
        cls, source, label, "weights", config=config, output_loading_info=True,
        dtype=torch.float32, **kw,
    )
    _check_loading(info, source, label)
    return model


class _HFImageEncoder(Encoder):
    """Shared image path: subclasses set ``model``, ``device``, ``info`` and ``_forward``."""

    device: torch.device

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        from histoseek.encoders.torch_tower import embed_tiles

        tiles = check_tiles(tiles)
        if len(tiles) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return embed_tiles(self._forward, tiles, self.info.preprocess, self.device)


class PhikonEncoder(_HFImageEncoder):
    """Phikon (iBOT ViT-B/16): the class token of the last hidden state, as the card says."""

    def __init__(self, source: WeightsSource, label: str, device: str) -> None:
        from transformers import AutoImageProcessor, ViTModel
        from transformers.utils import logging as hf_logging

        from histoseek.encoders.torch_tower import resolve_device

        hf_logging.disable_progress_bar()
        model = _load_model(ViTModel, source, label, "vit", add_pooling_layer=False)
        processor = _from_pretrained(
            AutoImageProcessor, source, label, "image processor (preprocessor_config.json)"
        )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.info = EncoderInfo(
            name=label,
            version=weights_version(source, HF_WEIGHT_NAMES, label),
            dim=int(model.config.hidden_size),
            modalities=("image",),
            preprocess=_hf_preprocess(processor, int(model.config.image_size)),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).last_hidden_state[:, 0]


def _pooled(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output from ``get_*_features``; 4.x returned the tensor."""
    return output if hasattr(output, "shape") else output.pooler_output


class HFClipEncoder(_HFImageEncoder):
    """A transformers ``CLIPModel`` with both towers (PLIP): projected, unit-length features."""

    def __init__(self, source: WeightsSource, label: str, device: str) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
        from transformers.utils import logging as hf_logging

        from histoseek.encoders.torch_tower import resolve_device

        hf_logging.disable_progress_bar()
        model = _load_model(CLIPModel, source, label, "clip")
        self.tokenizer = _from_pretrained(AutoTokenizer, source, label, "tokenizer")
        processor = _from_pretrained(
            AutoImageProcessor, source, label, "image processor (preprocessor_config.json)"
        )
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.info = EncoderInfo(
            name=label,
            version=weights_version(source, HF_WEIGHT_NAMES, label),
            dim=int(model.config.projection_dim),
            modalities=("image", "text"),
            preprocess=_hf_preprocess(processor, int(model.config.vision_config.image_size)),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_image_features(pixel_values=x))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        texts = check_texts(texts)
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                batch = self.tokenizer(
                    texts[start : start + 256], padding=True, truncation=True,
                    max_length=self.max_tokens, return_tensors="pt",
                ).to(self.device)
                features = self.model.get_text_features(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                )
                out.append(_pooled(features).float().cpu().numpy())
        return l2_normalise(np.concatenate(out, axis=0))


def create_phikon(spec: EncoderSpec, pretrained: str | None, device: str) -> PhikonEncoder:
    """Registry factory for ``phikon``: a hub id or a ``save_pretrained`` folder."""
    source = parse_pretrained(pretrained, spec.name, bare_hub_ids=True)
    return PhikonEncoder(source, spec.name, device)


def create_plip(spec: EncoderSpec, pretrained: str | None, device: str) -> HFClipEncoder:
    """Registry factory for ``plip``: a hub id or a ``save_pretrained`` folder (model+processor)."""
    source = parse_pretrained(pretrained, spec.name, bare_hub_ids=True)
    return HFClipEncoder(source, spec.name, device)
