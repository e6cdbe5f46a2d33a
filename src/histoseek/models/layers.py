"""Small building blocks shared by the towers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean ``(mean x^p)^(1/p)`` over H, W."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def grid_embeddings(fmap: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor],
                    grid: int = 2) -> torch.Tensor:
    """Anchor embeddings ``[B, grid*grid, D]``: the map cut into a grid, each cell embedded."""
    _b, _c, h, w = fmap.shape
    cells = [embed(fmap[:, :, i * h // grid:(i + 1) * h // grid,
                        j * w // grid:(j + 1) * w // grid])
             for i in range(grid) for j in range(grid)]
    return torch.stack(cells, dim=1)


class GeM(nn.Module):
    """Generalised-mean pooling ``(mean x^p)^(1/p)`` over H, W with a learnable ``p``.

    p = 1 is average pooling and p → ∞ max pooling; learning p lets the head choose how much
    a few strongly activated regions (a cluster of atypical nuclei) dominate a tile's vector.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p.clamp(min=1.0), self.eps)


def conv_bn_act(in_ch: int, out_ch: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )
