"""histoseek-base v2's image tower: a frozen ImageNet trunk shared by a general and a tuned branch.

Fine-tuning a pretrained CNN on ~1,500 colorectal tiles makes it better on colon and worse on
every other organ (measured: about -0.08 mMV@5 off-domain after four epochs, whatever the
learning rate). So the tower keeps the pretrained features instead of overwriting them:

- the stem and early blocks (local texture: nuclei, chromatin, stroma fibres) stay frozen;
- a **general branch** pools the frozen taps (strides 8, 16, 32) with GeM, exactly the
  ``imagenet-lite0`` baseline, and never changes;
- a **tuned branch** runs a trainable copy of the last blocks on the frozen stride-16 map,
  fuses it with the frozen taps in the local-global neck, and pools it with GeM into the
  space the text projection and every training loss see.

The library vector is ``[sqrt(g) * general, sqrt(1 - g) * tuned]``: unit length, and its inner
product is ``g * cos_general + (1 - g) * cos_tuned``. Text vectors are zero on the general part,
so text search and zero-shot rank by the tuned branch alone.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from histoseek.models.layers import GeM, gem, grid_embeddings
from histoseek.models.neck import LocalGlobalNeck


def multiscale_gem(maps: list[torch.Tensor], p: float = 3.0) -> torch.Tensor:
    """Per-scale fixed-p GeM, each L2-normalised so no scale dominates by magnitude,
    concatenated (the frozen branch has no parameters to learn)."""
    pooled = [F.normalize(gem(m.float(), p), dim=-1) for m in maps]
    return F.normalize(torch.cat(pooled, dim=-1), dim=-1)


class FusionTower(nn.Module):
    """Pixels → ``[B, general_dim + embed_dim]`` unit vectors (see the module docstring).

    ``taps``: block indices whose outputs are the multi-scale maps (strides 8, 16, 32 for
    EfficientNet-Lite's blocks 2, 4, 6). ``tune_from``: the first block copied and trained; the
    neck takes the frozen taps below it and the tuned output of the last block.
    """

    def __init__(self, backbone: str, embed_dim: int = 256, neck_width: int = 192,
                 taps: tuple[int, ...] = (2, 4, 6), tune_from: int = 5, fuse_index: int = 1,
                 general_weight: float = 0.5, pretrained_backbone: bool = True) -> None:
        super().__init__()
        from histoseek.models.imagenet_lite import create_pretrained

        if not 0.0 <= general_weight < 1.0:
            raise ValueError(f"general_weight must be in [0, 1), got {general_weight}")
        if not taps or not 0 <= tune_from <= taps[-1]:
            raise ValueError(f"tune_from={tune_from} must be a block index at or before the "
                             f"last tap of {taps}")
        net = create_pretrained(backbone, pretrained=pretrained_backbone)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = net.blocks[:taps[-1] + 1]  # the frozen trunk, shared by both branches
        self.tuned_blocks = copy.deepcopy(net.blocks[tune_from:taps[-1] + 1])
        self.taps, self.tune_from = tuple(taps), tune_from
        channels = [self.blocks[t][-1].conv_pwl.out_channels for t in taps]
        self.general_dim = sum(channels)
        self.tuned_dim = embed_dim
        self.general_weight = general_weight
        self.neck = LocalGlobalNeck(channels, neck_width, fuse_index)
        self.pool = GeM()
        self.proj = nn.Linear(neck_width, embed_dim)
        for module in (self.stem, self.blocks):
            module.requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.general_dim + self.tuned_dim

    def train(self, mode: bool = True) -> FusionTower:
        super().train(mode)
        self.stem.eval()  # frozen BatchNorm keeps the ImageNet statistics
        self.blocks.eval()
        return self

    def frozen_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen taps below ``tune_from`` and the map entering the tuned blocks.

        These are what a feature cache stores: the tuned branch needs nothing else.
        """
        with torch.no_grad():
            h = self.stem(x)
            out = []
            for i in range(self.tune_from):
                h = self.blocks[i](h)
                if i in self.taps:
                    out.append(h)
            if self.tune_from - 1 not in self.taps:
                out.append(h)
        return out

    def _split(self, frozen: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        below = [t for t in self.taps if t < self.tune_from]
        return frozen[:len(below)], frozen[-1]

    def tuned_feature_map(self, frozen: list[torch.Tensor]) -> torch.Tensor:
        """The tuned branch from cached frozen features: trainable blocks → neck map."""
        taps, h = self._split(frozen)
        tuned_taps = []
        for i, block in enumerate(self.tuned_blocks, start=self.tune_from):
            h = block(h)
            if i in self.taps:
                tuned_taps.append(h)
        return self.neck([*taps, *tuned_taps])

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.tuned_feature_map(self.frozen_features(x))

    def embed_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """The tuned-space vector: what the text projection and the losses align with."""
        return F.normalize(self.proj(self.pool(fmap)), dim=-1)

    def region_embeddings(self, fmap: torch.Tensor, grid: int = 2) -> torch.Tensor:
        return grid_embeddings(fmap, self.embed_map, grid)

    def general_embedding(self, frozen: list[torch.Tensor]) -> torch.Tensor:
        """The frozen branch: multi-scale GeM of the pretrained taps (``imagenet-lite0``)."""
        with torch.no_grad():
            taps, h = self._split(frozen)
            for i in range(self.tune_from, self.taps[-1] + 1):
                h = self.blocks[i](h)
                if i in self.taps:
                    taps.append(h)
            return multiscale_gem(taps)

    def join(self, general: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
        g = self.general_weight
        return torch.cat([math.sqrt(g) * general.float(), math.sqrt(1 - g) * tuned.float()],
                         dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen = self.frozen_features(x)
        tuned = self.embed_map(self.tuned_feature_map(frozen).float())
        return self.join(self.general_embedding(frozen), tuned)

    def pad_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text lives in the tuned space: zeros on the general part keep it unit length."""
        zeros = text.new_zeros(*text.shape[:-1], self.general_dim)
        return torch.cat([zeros, text], dim=-1)
