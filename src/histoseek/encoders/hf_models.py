"""``phikon`` and ``plip`` through transformers.

``pretrained`` is a hub id (``owkin/phikon`` or ``hf-hub:owkin/phikon``) or a local folder
written by ``save_pretrained`` (config, weights and the image processor / tokenizer files).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from histoseek.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    EncoderInfo,
    Preprocess,
    l2_normalise,
)
from histoseek.encoders.weights_source import (
    HF_WEIGHT_NAMES,
    WeightsSource,
    check_hub_access,
    interpolation_name,
    load_or_raise,
    parse_pretrained,
    weights_version,
)
from histoseek.errors import WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from histoseek.encoders.registry import EncoderSpec


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

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        from histoseek.encoders.torch_tower import embed_tiles

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

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
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
