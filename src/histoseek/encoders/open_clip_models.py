"""``quiltnet`` and ``biomedclip``: CLIP models with both towers, loaded through open_clip.

``pretrained`` is one of
- ``hf-hub:org/name``: open_clip reads ``open_clip_config.json`` and the weights from the hub;
- a folder holding ``open_clip_config.json`` + weights (what the hub repository holds):
  loaded through open_clip's ``local-dir:`` schema, tokenizer included;
- a bare weights file (``.bin``/``.pt``/``.safetensors``): loaded into the built-in
  architecture named in ``OPEN_CLIP_ARCHS``.

Weights are required (``create_model_from_pretrained``): open_clip would otherwise fall back to
random weights with only a logged warning. Preprocessing comes from the model's
``preprocess_cfg``; both towers return unit vectors in one space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import open_clip
import torch

from histoseek.encoders.base import (
    Encoder,
    EncoderInfo,
    Preprocess,
    l2_normalise,
)
from histoseek.encoders.torch_tower import embed_tiles, resolve_device
from histoseek.encoders.weights_source import (
    HUB_PREFIX,
    LOCAL_DIR_PREFIX,
    WeightsSource,
    check_hub_access,
    hub_version,
    interpolation_name,
    load_or_raise,
    local_version,
    parse_pretrained,
)
from histoseek.errors import WeightsNotFoundError

if TYPE_CHECKING:
    from histoseek.encoders.registry import EncoderSpec

# open_clip's own preference order (factory._find_checkpoint_in_dir, pretrained.HF_WEIGHTS_NAME).
OPEN_CLIP_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)
# Built-in open_clip architectures for a bare weights file. QuiltNet-B-32 is OpenAI CLIP
# ViT-B/32 fine-tuned on Quilt-1M, so it keeps OpenAI's QuickGELU. BiomedCLIP has no built-in
# config (timm ViT + PubMedBERT), so it needs its folder with open_clip_config.json.
OPEN_CLIP_ARCHS: dict[str, str] = {"quiltnet": "ViT-B-32-quickgelu"}
TEXT_BATCH = 256


def _model_name(source: WeightsSource, label: str) -> tuple[str, str | None]:
    """The ``(model_name, pretrained)`` pair open_clip takes for ``source``."""
    if source.kind == "hub":
        if source.revision is not None:
            raise WeightsNotFoundError(
                f"{HUB_PREFIX}{source.hub_id}: open_clip loads only a repository's main "
                f"revision; download that revision and pass its folder"
            )
        check_hub_access(source, "open_clip_config.json", label)
        return f"{HUB_PREFIX}{source.location}", None
    if source.kind == "dir":
        if not (source.path / "open_clip_config.json").is_file():
            raise WeightsNotFoundError(
                f"{source.path}: no open_clip_config.json, so open_clip cannot tell the "
                f"architecture; pass the folder as the hub repository has it, or the weights file"
            )
        return f"{LOCAL_DIR_PREFIX}{source.location}", None
    arch = OPEN_CLIP_ARCHS.get(label)
    if arch is None:
        raise WeightsNotFoundError(
            f"{source.path}: encoder '{label}' has no built-in open_clip architecture for a bare "
            f"weights file; pass the folder with its open_clip_config.json instead"
        )
    return arch, source.location


def _preprocess(model: Any) -> Preprocess:
    """Size, mean, std and interpolation from open_clip's ``visual.preprocess_cfg``."""
    cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", 224)
    size = size[-1] if isinstance(size, (tuple, list)) else size
    defaults = Preprocess(mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    return Preprocess(
        input_px=int(size),
        mean=tuple(float(v) for v in cfg.get("mean", defaults.mean)),
        std=tuple(float(v) for v in cfg.get("std", defaults.std)),
        interpolation=interpolation_name(cfg.get("interpolation", "bicubic")),
    )


class OpenClipEncoder(Encoder):
    """An open_clip CLIP: ``encode_image`` / ``encode_text``, both normalised."""

    def __init__(self, source: WeightsSource, label: str, device: str) -> None:
        self.device = resolve_device(device)
        name, pretrained = _model_name(source, label)
        if source.kind == "hub":
            model = load_or_raise(lambda: self._create(name, pretrained), source, label)
            version = hub_version(source, OPEN_CLIP_WEIGHT_NAMES)
        else:
            version = local_version(source, OPEN_CLIP_WEIGHT_NAMES, label)
            model = load_or_raise(lambda: self._create(name, pretrained), source, label)
        self.tokenizer = load_or_raise(
            lambda: open_clip.get_tokenizer(name), source, label, "tokenizer"
        )
        self.model = model.eval()
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["tissue"]).to(self.device))
        self.info = EncoderInfo(
            name=label,
            version=version,
            dim=int(probe.shape[-1]),
            modalities=("image", "text"),
            preprocess=_preprocess(model),
        )

    def _create(self, name: str, pretrained: str | None) -> Any:
        return open_clip.create_model_from_pretrained(
            name, pretrained=pretrained, device=self.device, return_transform=False
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x, normalize=True)

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self._forward, tiles, self.info.preprocess, self.device)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.tokenizer(texts[start : start + TEXT_BATCH]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return l2_normalise(np.concatenate(out, axis=0))


def create_open_clip_encoder(
    spec: EncoderSpec, pretrained: str | None, device: str
) -> OpenClipEncoder:
    """Registry factory for open_clip models (see the module docstring)."""
    source = parse_pretrained(pretrained, spec.name, bare_hub_ids=False)
    return OpenClipEncoder(source, spec.name, device)
