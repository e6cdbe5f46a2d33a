"""A temperature kept as a (possibly learnable) log logit scale, as in CLIP."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LogitScale(nn.Module):
    """Hold ``1 / temperature`` as ``log`` of the scale, clamped at ``1 / min_temperature``.

    The losses take a temperature (one unit everywhere); CLIP's "logit scale init 1/0.07,
    max 100" is ``LogitScale(temperature=0.07, learnable=True, min_temperature=0.01)``.
    Storing the log keeps the learned scale positive; the clamp stops the collapse of the
    temperature towards zero (the gradient is zero while clamped, as in open_clip).

    Args:
        temperature: Initial temperature, ``> 0``.
        learnable: Train the scale (an ``nn.Parameter``) or keep it fixed (a buffer).
        min_temperature: Lowest temperature a learnable scale reaches,
            ``0 < min_temperature <= temperature``; ignored when fixed.

    Raises:
        ValueError: ``temperature`` is not positive, or (learnable) the minimum is not in
            ``(0, temperature]``.
    """

    def __init__(
        self, temperature: float = 0.07, learnable: bool = True, min_temperature: float = 0.01
    ) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite float, got {temperature}")
        if learnable and not (0 < min_temperature <= temperature):
            raise ValueError(
                f"min_temperature must be in (0, temperature={temperature}] for a learnable "
                f"temperature, got {min_temperature}"
            )
        self.learnable = learnable
        self.max_scale = 1.0 / (min_temperature if learnable else temperature)
        log_scale = torch.tensor(math.log(1.0 / temperature), dtype=torch.float32)
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self) -> Tensor:
        """Return the current scale ``1 / temperature`` as a 0-d float tensor."""
        return self.log_scale.exp().clamp(max=self.max_scale)

    @property
    def temperature(self) -> float:
        """The current temperature as a Python float (for logging)."""
        return 1.0 / float(self.forward().detach())
