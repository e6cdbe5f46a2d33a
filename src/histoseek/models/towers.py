"""The image tower (backbone → neck → GeM → projection) and the text projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from histoseek.models.layers import GeM, grid_embeddings
from histoseek.models.neck import LocalGlobalNeck


class ImageTower(nn.Module):
    """Tile pixels (normalised ``[B, 3, H, W]``) to unit embeddings ``[B, embed_dim]``.

    ``use_neck=False`` pools only the deepest stage (the ablation's "backbone + GeM").
    """

    def __init__(self, backbone: str, embed_dim: int, neck_width: int = 256,
                 out_indices: tuple[int, ...] = (1, 2, 3, 4), use_neck: bool = True,
                 fuse_index: int = 2) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True,
                                          out_indices=out_indices)
        channels = self.backbone.feature_info.channels()
        self.use_neck = use_neck
        self.neck = LocalGlobalNeck(channels, neck_width, fuse_index) if use_neck else None
        width = neck_width if use_neck else channels[-1]
        self.pool = GeM()
        self.proj = nn.Linear(width, embed_dim)
        self.tuned_dim = self.dim = embed_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return self.neck(features) if self.neck is not None else features[-1]

    def embed_map(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pool(fmap)), dim=-1)

    def region_embeddings(self, fmap: torch.Tensor, grid: int = 2) -> torch.Tensor:
        """Anchor embeddings ``[B, grid*grid, D]``: the map cut into a grid, each cell pooled."""
        return grid_embeddings(fmap, self.embed_map, grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_map(self.feature_map(x))

    def pad_text(self, text: torch.Tensor) -> torch.Tensor:
        return text  # one space: the library vector is the trained embedding itself


class TextProjection(nn.Module):
    """Frozen sentence embeddings (MiniLM, 384-d) into the joint space, L2-normalised."""

    def __init__(self, text_dim: int, embed_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, embed_dim))
        self.skip = nn.Linear(text_dim, embed_dim, bias=False)

    def forward(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(sentence_emb) + self.skip(sentence_emb), dim=-1)


class HistoseekModel(nn.Module):
    """Both towers; the text encoder itself (MiniLM) stays outside, frozen.

    ``image`` is an ``ImageTower`` (v1, trained from scratch) or a ``FusionTower`` (v2). The
    losses work in the tower's tuned space (``image.embed_map``, ``text``); ``encode_image`` and
    ``encode_text`` give the library's vectors, which for v2 also carry the frozen general part.
    """

    def __init__(self, image: nn.Module, text_dim: int = 384) -> None:
        super().__init__()
        self.image = image
        self.text = TextProjection(text_dim, image.tuned_dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), CLIP's start

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.image(x)

    def encode_text(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        return self.image.pad_text(self.text(sentence_emb))
