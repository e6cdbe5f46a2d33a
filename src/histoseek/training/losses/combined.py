"""Weights of the training losses and their weighted sum."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    """Multiplier of each loss in the training objective; ``0`` disables a loss.

    Field names are the keys ``combine`` expects in its ``parts``.

    Raises:
        ValueError: A weight is negative or not finite.
    """

    arcface: float = 0.0
    knowledge: float = 0.0
    clip: float = 0.0
    fgcr: float = 0.0
    hierarchical: float = 0.0
    simclr: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"LossWeights.{name} must be a finite float >= 0, got {value}")

    def items(self) -> tuple[tuple[str, float], ...]:
        """Return ``(name, weight)`` for every loss, in field order."""
        return tuple((f.name, float(getattr(self, f.name))) for f in fields(self))

    def enabled(self) -> tuple[str, ...]:
        """Return the names of the losses with a weight above zero."""
        return tuple(name for name, value in self.items() if value > 0)


def combine(parts: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """Return ``sum(weight * part)`` over the enabled losses.

    Parts of disabled losses (weight ``0``) are ignored, so a caller may compute more than
    it trains on.

    Args:
        parts: 0-d loss tensors keyed by ``LossWeights`` field name.
        weights: The loss weights.

    Returns:
        0-d float tensor, the training objective.

    Raises:
        ValueError: No loss is enabled, a key is not a ``LossWeights`` field, an enabled
            loss has no part, or a part is not a 0-d tensor.
    """
    names = {name for name, _ in weights.items()}
    unknown = sorted(set(parts) - names)
    if unknown:
        raise ValueError(f"unknown loss parts {unknown}; expected names from {sorted(names)}")
    enabled = weights.enabled()
    if not enabled:
        raise ValueError("every LossWeights weight is 0; enable at least one loss")
    missing = [name for name in enabled if name not in parts]
    if missing:
        raise ValueError(
            f"losses {missing} have a weight > 0 but no part was given; compute them or set "
            "their weight to 0"
        )
    terms: list[Tensor] = []
    for name in enabled:
        part = parts[name]
        if not isinstance(part, Tensor) or part.ndim != 0:
            raise ValueError(f"part {name!r} must be a 0-d tensor, got {part!r:.80}")
        terms.append(getattr(weights, name) * part)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
