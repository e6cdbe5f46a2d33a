"""``histoseek-base``: the built-in image+text model, trained here, shipped in the package.

Image tower: ``histoseek.models`` (v2: frozen ImageNet EfficientNet-Lite0 general branch beside
a fine-tuned branch with the local-global neck and GeM). Text tower: the frozen ``minilm``
sentence encoder followed by the model's trained projection, so texts and tiles land in one
space. ``histoseek-base-v1`` (ResNet-10t from scratch) and ``histoseek-base-lite2`` are the
same encoder over other model configs; they need ``pretrained=`` a weights file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess, l2_normalise
from histoseek.encoders.torch_tower import CpuOptimisedForward, embed_tiles, resolve_device


class HistoseekBaseEncoder(Encoder):
    def __init__(self, name: str, pretrained: str | Path | None, device: str) -> None:
        import torch

        from histoseek.models.factory import (
            PACKAGED,
            architecture,
            create_model,
            get_model_config,
            resolve_weights,
        )

        config = get_model_config(name)
        weights = resolve_weights(name, pretrained or PACKAGED)
        self.device = resolve_device(device)
        self.model = create_model(name, pretrained=weights).to(self.device).eval()
        self._torch = torch
        pre = config["preprocess"]
        self.info = EncoderInfo(
            name=name, version=model_version(weights, architecture(name, weights)),
            dim=int(self.model.image.dim), modalities=("image", "text"),
            preprocess=Preprocess(int(pre["input_px"]), tuple(pre["mean"]), tuple(pre["std"]),
                                  pre.get("interpolation", "bicubic")),
            extra={"text_encoder": config.get("text_encoder", "minilm")},
        )
        self._text_encoder: Encoder | None = None
        self._image_forward = CpuOptimisedForward(self.model.image, int(pre["input_px"]),
                                                  self.device)

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self._image_forward, tiles, self.info.preprocess, self.device)

    def sentence_embeddings(self, texts: list[str]) -> np.ndarray:
        """Frozen MiniLM vectors (384-d), before the model's projection."""
        if self._text_encoder is None:
            from histoseek.encoders.registry import create_encoder

            self._text_encoder = create_encoder(self.info.extra["text_encoder"],
                                                device=str(self.device))
        return self._text_encoder.encode_texts(texts)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        sentences = self._torch.from_numpy(self.sentence_embeddings(texts)).to(self.device)
        with self._torch.inference_mode():
            projected = self.model.encode_text(sentences)
        return l2_normalise(projected.float().cpu().numpy())


def model_version(weights: Path | None, architecture: dict) -> str:
    """The weights' sha256 prefix plus a hash of the architecture they run in.

    Some fields (v2's general-branch weight ``g``) change the vectors without changing the
    weights file, so the file's hash alone would let a library mix two kinds of vectors.
    """
    import json

    from histoseek.hashing import sha256_file, sha256_text

    arch = sha256_text(json.dumps(architecture, sort_keys=True))[:8]
    return f"{sha256_file(weights)[:16] if weights else 'random'}-{arch}"


def create_histoseek_base(spec: object, pretrained: str | None, device: str
                          ) -> HistoseekBaseEncoder:
    return HistoseekBaseEncoder(getattr(spec, "name", "histoseek-base"), pretrained, device)
