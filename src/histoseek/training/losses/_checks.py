"""Shape and dtype checks shared by the losses; each raises ``ValueError`` naming the input."""

from __future__ import annotations

import torch
from torch import Tensor


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)} and dtype {t.dtype}"


def check_float(name: str, t: Tensor, ndim: int, expected: tuple[int | None, ...]) -> None:
    """Raise unless ``t`` is a floating tensor with ``ndim`` dims matching ``expected``.

    Args:
        name: Argument name used in the message.
        t: Tensor to check.
        ndim: Required number of dimensions.
        expected: One entry per dimension; ``None`` accepts any size.

    Raises:
        ValueError: Wrong type, dtype, number of dimensions or size.
    """
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {_describe(t)}")
    _check_dims(name, t, ndim, expected)


def check_ids(name: str, t: Tensor, length: int) -> None:
    """Raise unless ``t`` is a 1-D integer tensor of ``length`` entries.

    Raises:
        ValueError: Not a tensor, not integer, not 1-D or wrong length.
    """
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {_describe(t)}")
    _check_dims(name, t, 1, (length,))


def check_mask(name: str, t: Tensor, expected: tuple[int, ...]) -> None:
    """Raise unless ``t`` is a bool tensor of exactly ``expected`` shape.

    Raises:
        ValueError: Not a tensor, not bool or wrong shape.
    """
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {_describe(t)}")
    _check_dims(name, t, len(expected), expected)


def check_labels_in_range(name: str, labels: Tensor, num_classes: int) -> None:
    """Raise unless every label lies in ``[0, num_classes)``.

    Raises:
        ValueError: A label is negative or too large.
    """
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {low} to {high}")


def _check_dims(name: str, t: Tensor, ndim: int, expected: tuple[int | None, ...]) -> None:
    shape = "[" + ", ".join("*" if s is None else str(s) for s in expected) + "]"
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s) {shape}, got {_describe(t)}")
    for got, want in zip(t.shape, expected, strict=True):
        if want is not None and got != want:
            raise ValueError(f"{name} must have shape {shape}, got {_describe(t)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty ({_describe(t)}); a loss needs at least one row")
