"""``resnet18-random``: a randomly initialised timm ResNet-18 with GeM pooling.

Not a useful model: the floor. Any learned encoder that cannot beat random convolutional
features on a data set has learned nothing that data set rewards. The init is seeded, so the
"weights" are reproducible and a library built with it can be reopened.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess
from histoseek.encoders.torch_tower import embed_tiles, resolve_device
from histoseek.models.layers import GeM

SEED = 0


class RandomResNetEncoder(Encoder):
    def __init__(self, device: str) -> None:
        import timm

        self.device = resolve_device(device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(SEED)
        try:
            backbone = timm.create_model("resnet18", pretrained=False, num_classes=0,
                                         global_pool="")
        finally:
            torch.random.set_rng_state(generator_state)
        # the towers' GeM (p = 3, never trained here, so its p >= 1 clamp is a no-op)
        self.model = nn.Sequential(backbone, GeM()).eval().to(self.device)
        self.info = EncoderInfo(
            name="resnet18-random", version=f"timm-resnet18-seed{SEED}", dim=512,
            modalities=("image",), preprocess=Preprocess(input_px=224),
        )

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self.model, tiles, self.info.preprocess, self.device)


def create_random_resnet(spec: object, pretrained: str | None, device: str) -> RandomResNetEncoder:
    return RandomResNetEncoder(device)
