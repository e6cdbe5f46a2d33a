"""Shared plumbing for encoders whose image tower is a torch ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from histoseek.encoders.base import Preprocess, check_tiles, l2_normalise


def resolve_device(device: str | None) -> torch.device:
    """Pick ``device`` or fall back to CPU when CUDA is asked for but absent."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(device)


def tiles_to_tensor(tiles: np.ndarray, pre: Preprocess, device: torch.device) -> torch.Tensor:
    """Turn uint8 ``[n, h, w, 3]`` tiles into a normalised float ``[n, 3, s, s]`` batch."""
    tiles = check_tiles(tiles)
    tiles = np.ascontiguousarray(tiles)
    if not tiles.flags.writeable:  # torch warns on read-only buffers (e.g. from np.asarray(PIL))
        tiles = tiles.copy()
    x = torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).float()
    x = x / 255.0
    if x.shape[-2:] != (pre.input_px, pre.input_px):
        x = F.interpolate(
            x, size=(pre.input_px, pre.input_px), mode=pre.interpolation, align_corners=False
        ).clamp_(0.0, 1.0)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


class CpuOptimisedForward:
    """``module``'s forward, optimised for CPU (``cpu_inference``) on first use: tracing costs
    about 2 s, which a text-only query should not pay."""

    def __init__(self, module: torch.nn.Module, input_px: int, device: torch.device) -> None:
        self.module, self.input_px, self.device = module, input_px, device
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._forward is None:
            if self.device.type == "cpu":
                from histoseek.encoders.cpu_inference import optimise_for_cpu

                self._forward = optimise_for_cpu(self.module, self.input_px)
            else:
                self._forward = self.module
        return self._forward(x)


@torch.inference_mode()
def embed_tiles(
    forward: Callable[[torch.Tensor], torch.Tensor],
    tiles: np.ndarray,
    pre: Preprocess,
    device: torch.device,
    batch_size: int = 64,
) -> np.ndarray:
    """Run ``forward`` over tiles in batches and return unit float32 vectors."""
    out = []
    for start in range(0, len(tiles), batch_size):
        x = tiles_to_tensor(tiles[start : start + batch_size], pre, device)
        out.append(forward(x).float().cpu().numpy())
    return l2_normalise(np.concatenate(out, axis=0))
