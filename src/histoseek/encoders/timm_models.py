"""``uni``, ``h-optimus-0`` and ``virchow2``: pathology ViTs loaded through ``timm.create_model``.

``pretrained`` is one of
- ``hf-hub:org/name``: passed to timm as is, with the kwargs the model card requires;
- a folder as timm exports it (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
  what the hub repository holds): loaded through timm's ``local-dir:`` source;
- a bare weights file (``.safetensors``/``.bin``/``.pth``): loaded into the architecture the
  model's hub ``config.json`` declares, kept below in ``TIMM_ARCHS``.

Preprocessing (size, mean, std, interpolation) is read back from the model's
``pretrained_cfg``, so it is what the weights were exported with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import timm
import torch
from timm.data import resolve_data_config
from timm.layers import SwiGLUPacked

from histoseek.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    EncoderInfo,
    Preprocess,
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

# timm looks for these in a folder (timm.models._hub._PREFERRED_FILES) and on the hub.
TIMM_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)

Pooling = Literal["model", "cls+mean_patch"]


@dataclass(frozen=True)
class TimmArch:
    """What a model card says about one timm model.

    ``card_kwargs`` go with every load (hub, folder, file), as the card's ``create_model`` call
    passes them; ``arch`` + ``arch_kwargs`` + ``preprocess`` rebuild what the hub
    ``config.json`` would give, for a bare weights file. ``force_norm`` keeps the card's mean/std
    even when a config says otherwise.
    """

    arch: str
    card_kwargs: Mapping[str, Any]
    arch_kwargs: Mapping[str, Any]
    preprocess: Preprocess
    force_norm: bool = False
    pooling: Pooling = "model"


TIMM_ARCHS: dict[str, TimmArch] = {
    "uni": TimmArch(
        arch="vit_large_patch16_224",
        card_kwargs={"init_values": 1e-5, "dynamic_img_size": True},
        arch_kwargs={"img_size": 224, "patch_size": 16, "global_pool": "token"},
        preprocess=Preprocess(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
    ),
    "h-optimus-0": TimmArch(
        arch="vit_giant_patch14_reg4_dinov2",
        card_kwargs={"init_values": 1e-5, "dynamic_img_size": False},
        arch_kwargs={"img_size": 224, "global_pool": "token"},
        preprocess=Preprocess(224, HOPTIMUS_MEAN, HOPTIMUS_STD, "bicubic"),
        force_norm=True,
    ),
    "virchow2": TimmArch(
        arch="vit_huge_patch14_224",
        card_kwargs={"mlp_layer": SwiGLUPacked, "act_layer": torch.nn.SiLU},
        arch_kwargs={
            "img_size": 224, "init_values": 1e-5, "reg_tokens": 4, "mlp_ratio": 5.3375,
            "global_pool": "", "dynamic_img_size": True,
        },
        preprocess=Preprocess(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
        pooling="cls+mean_patch",
    ),
}


def _norm_overlay(spec: TimmArch | None) -> dict[str, Any]:
    if spec is None or not spec.force_norm:
        return {}
    return {"mean": spec.preprocess.mean, "std": spec.preprocess.std}


def _file_overlay(spec: TimmArch, path: str) -> dict[str, Any]:
    """A ``pretrained_cfg`` overlay that points timm at ``path`` with the card's preprocessing.

    ``custom_load=False`` stops timm from using a registered tag's own loader (ViT-L's is the
    ``.npz`` one); ``num_classes=0`` matches headless pathology checkpoints.
    """
    pre = spec.preprocess
    return {
        "file": path,
        "custom_load": False,
        "num_classes": 0,
        "input_size": (3, pre.input_px, pre.input_px),
        "mean": pre.mean,
        "std": pre.std,
        "interpolation": pre.interpolation,
        "crop_pct": 1.0,
    }


def _check_timm_config(source: WeightsSource, label: str) -> None:
    """A folder needs timm's config.json (it names the architecture); say so before timm does."""
    config_file = source.path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = None
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(f"{config_file}: unreadable ({exc}); re-download it") from exc
    if not isinstance(config, dict) or "architecture" not in config:
        raise WeightsNotFoundError(
            f"{source.path}: no timm config.json naming an 'architecture', so encoder '{label}' "
            f"cannot tell the model; pass the folder as the hub repository has it (config.json "
            f"+ weights) or the weights file itself"
        )


def load_timm_model(source: WeightsSource, spec: TimmArch | None, label: str) -> torch.nn.Module:
    """Create the timm model for ``source``; every failure is a ``WeightsNotFoundError``."""
    kwargs: dict[str, Any] = {"num_classes": 0, **(spec.card_kwargs if spec else {})}
    if source.kind == "hub":
        check_hub_access(source, "config.json", label)
        name = f"{HUB_PREFIX}{source.hub_id}"
        overlay = _norm_overlay(spec) or None
    elif source.kind == "dir":
        _check_timm_config(source, label)
        name = f"{LOCAL_DIR_PREFIX}{source.location}"
        overlay = _norm_overlay(spec) or None
    else:
        if spec is None:
            raise WeightsNotFoundError(
                f"{source.path}: encoder '{label}' has no known architecture for a bare weights "
                f"file; pass the folder with its config.json instead"
            )
        name = spec.arch
        kwargs.update(spec.arch_kwargs)
        overlay = _file_overlay(spec, source.location)
    return load_or_raise(
        lambda: timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs),
        source,
        label,
    )


def _preprocess(model: torch.nn.Module) -> Preprocess:
    """Preprocessing from the model's ``pretrained_cfg`` (plain resize; crop_pct is ignored)."""
    config = resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    return Preprocess(
        input_px=int(size),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
        interpolation=interpolation_name(config.get("interpolation", "bicubic")),
    )


class TimmEncoder(Encoder):
    """A headless timm model: pooled features, or class token + mean patch token (Virchow)."""

    def __init__(
        self, label: str, model: torch.nn.Module, version: str, pooling: Pooling, device: str
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.pooling = pooling
        width = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.info = EncoderInfo(
            name=label,
            version=version,
            dim=2 * width if pooling == "cls+mean_patch" else width,
            modalities=("image",),
            preprocess=_preprocess(model),
            extra={"arch": str(model.pretrained_cfg.get("architecture", ""))},
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls+mean_patch":
            # Virchow's card: class token ++ mean of the patch tokens; registers are skipped.
            tokens = self.model.forward_features(x)
            start = int(self.model.num_prefix_tokens)
            return torch.cat([tokens[:, 0], tokens[:, start:].mean(dim=1)], dim=-1)
        return self.model(x)

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self._forward, tiles, self.info.preprocess, self.device)


def create_timm_encoder(spec: EncoderSpec, pretrained: str | None, device: str) -> TimmEncoder:
    """Registry factory for the timm pathology models (see the module docstring)."""
    source = parse_pretrained(pretrained, spec.name, bare_hub_ids=False)
    arch = TIMM_ARCHS.get(spec.name)
    if source.kind == "hub":
        model = load_timm_model(source, arch, spec.name)
        version = hub_version(source, TIMM_WEIGHT_NAMES)
    else:
        version = local_version(source, TIMM_WEIGHT_NAMES, spec.name)
        model = load_timm_model(source, arch, spec.name)
    pooling: Pooling = arch.pooling if arch else "model"
    return TimmEncoder(spec.name, model, version, pooling, device)
