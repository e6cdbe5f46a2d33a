"""``imagenet-lite0`` / ``imagenet-lite2``: frozen ImageNet EfficientNet-Lite, multi-scale GeM.

No pathology training at all: GeM-pooled maps of the last three stages (strides 8, 16, 32),
each L2-normalised and concatenated. It is the general-purpose floor histoseek-base must beat
on every organ, and exactly the frozen general branch inside histoseek-base v2.
"""

from __future__ import annotations

import numpy as np
import torch

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess
from histoseek.encoders.torch_tower import CpuOptimisedForward, embed_tiles, resolve_device
from histoseek.models.fusion_tower import multiscale_gem
from histoseek.models.imagenet_lite import MEAN, STD, checkpoint_path, create_pretrained

OUT_INDICES = (2, 3, 4)  # timm feature stages = the outputs of blocks 2, 4 and 6


class MultiScaleGeM(torch.nn.Module):
    def __init__(self, arch: str) -> None:
        super().__init__()
        self.trunk = create_pretrained(arch, features_only=True, out_indices=OUT_INDICES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return multiscale_gem(self.trunk(x))


class ImageNetLiteEncoder(Encoder):
    def __init__(self, name: str, arch: str, device: str) -> None:
        self.device = resolve_device(device)
        self.model = MultiScaleGeM(arch).eval().to(self.device)
        self.info = EncoderInfo(
            name=name, version=f"imagenet-{checkpoint_path(arch).stem}",
            dim=int(sum(self.model.trunk.feature_info.channels())), modalities=("image",),
            preprocess=Preprocess(224, MEAN, STD, "bicubic"),
        )
        self._forward = CpuOptimisedForward(self.model, 224, self.device)

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self._forward, tiles, self.info.preprocess, self.device)


def create_imagenet_lite(spec: object, pretrained: str | None, device: str
                         ) -> ImageNetLiteEncoder:
    name = getattr(spec, "name", "imagenet-lite0")
    return ImageNetLiteEncoder(name, "efficientnet_" + name.removeprefix("imagenet-"), device)
