"""Training augmentations for H&E tiles, on uint8 HWC arrays → normalised CHW tensors.

Stain variation is the main nuisance between labs and scanners, so besides crops, flips,
90° rotations and mild colour jitter, each view gets an HED stain jitter: optical density is
unmixed into haematoxylin, eosin and DAB (Ruifrok & Johnston's matrix, as in scikit-image),
each channel scaled and shifted at random, and mixed back (Tellez et al., 2018).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import hed_from_rgb, rgb_from_hed
from torchvision.transforms import v2

_RGB_FROM_HED = torch.tensor(rgb_from_hed, dtype=torch.float32)
_HED_FROM_RGB = torch.tensor(hed_from_rgb, dtype=torch.float32)


class HEDJitter(torch.nn.Module):
    """Random per-stain scale (1 ± sigma) and shift (± sigma) in HED optical density."""

    def __init__(self, sigma: float = 0.05) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float ``[3, H, W]`` in [0, 1]."""
        od = -torch.log(x.clamp(min=1e-6)).permute(1, 2, 0)  # [H, W, 3]
        hed = od @ _HED_FROM_RGB
        alpha = 1 + (torch.rand(3) * 2 - 1) * self.sigma
        beta = (torch.rand(3) * 2 - 1) * self.sigma
        hed = hed * alpha + beta
        rgb = torch.exp(-(hed @ _RGB_FROM_HED)).clamp(0.0, 1.0)
        return rgb.permute(2, 0, 1)


class Rot90(torch.nn.Module):
    """Rotate by a random multiple of 90°: tissue has no canonical orientation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, int(torch.randint(0, 4, ())), dims=(-2, -1))


def train_transform(input_px: int, mean: tuple[float, ...], std: tuple[float, ...],
                    strength: float = 1.0) -> v2.Compose:
    """Strong augmentation for one view (``strength`` scales colour and stain jitter)."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(input_px, scale=(0.35, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        Rot90(),
        v2.ToDtype(torch.float32, scale=True),
        HEDJitter(0.05 * strength),
        v2.RandomApply([v2.ColorJitter(0.25 * strength, 0.25 * strength, 0.15 * strength,
                                       0.04 * strength)], p=0.8),
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
        v2.Normalize(mean, std),
    ])


def as_uint8(tile: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tile[..., :3], dtype=np.uint8)
