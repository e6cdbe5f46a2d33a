"""Local-global feature fusion neck (after Local-Global Feature Fusion, Sensors 2025).

Early stages see local detail (nuclei, chromatin) at high resolution; late stages see global
context (gland architecture) at low resolution. The neck brings every stage to a common
width and the stride of one chosen stage, lets a global context vector (pooled from the
deepest stage) gate each stage's channels, and fuses them (1x1 then 3x3 conv). The output map
keeps spatial layout, so a pooling head gives the tile vector and region crops of the same
map give anchor (sub-region) vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from histoseek.models.layers import conv_bn_act


class LocalGlobalNeck(nn.Module):
    def __init__(self, in_channels: list[int], width: int, fuse_index: int = 2) -> None:
        super().__init__()
        self.fuse_index = fuse_index
        self.lateral = nn.ModuleList(conv_bn_act(c, width) for c in in_channels)
        self.global_gate = nn.Sequential(
            nn.Linear(in_channels[-1], width), nn.ReLU(inplace=True),
            nn.Linear(width, width * len(in_channels)), nn.Sigmoid(),
        )
        self.fuse = nn.Sequential(conv_bn_act(width * len(in_channels), width, kernel=1),
                                  conv_bn_act(width, width, kernel=3))
        self.width = width

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fuse ``[B, C_i, H_i, W_i]`` stage maps into one ``[B, width, H_f, W_f]`` map."""
        if len(features) != len(self.lateral):
            raise ValueError(f"neck expects {len(self.lateral)} feature maps, got {len(features)}")
        size = features[self.fuse_index].shape[-2:]
        context = features[-1].mean(dim=(-2, -1))
        gates = self.global_gate(context).view(context.shape[0], len(features), self.width)
        fused = []
        for i, (feat, lateral) in enumerate(zip(features, self.lateral, strict=True)):
            x = lateral(feat)
            if x.shape[-2:] != size:
                x = (F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size[-1]
                     else F.interpolate(x, size=size, mode="bilinear", align_corners=False))
            fused.append(x * gates[:, i, :, None, None])
        return self.fuse(torch.cat(fused, dim=1))
