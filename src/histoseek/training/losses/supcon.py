"""Supervised contrastive loss (SupCon) at one level of labels."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from histoseek.training.losses._checks import check_float, check_ids


class SupCon(nn.Module):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, the ``L_out`` form).

    For anchor ``i`` with positives ``P(i) = {p != i : y_p = y_i}`` and all others
    ``A(i) = {a != i}``:

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / T) / sum_{a in A(i)} exp(z_i.z_a / T) )
        loss = mean of l_i over anchors with |P(i)| > 0

    Anchors without a positive are skipped; if no anchor has one the loss is an exact zero
    that is still connected to the graph (no NaN, no error).

    Args:
        temperature: Softmax temperature ``T`` (> 0).

    Raises:
        ValueError: ``temperature`` is not positive.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite float, got {temperature}")
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Return the mean SupCon loss over anchors that have a positive.

        Args:
            embeddings: ``[N, D]`` float, L2-normalised embeddings, ``N >= 2``.
            labels: ``[N]`` integer labels; equal labels are positives.

        Returns:
            0-d float loss.

        Raises:
            ValueError: Shapes or dtypes do not match, or ``N < 2``.
        """
        check_float("embeddings", embeddings, 2, (None, None))
        count = embeddings.shape[0]
        if count < 2:
            raise ValueError(f"SupCon needs at least 2 embeddings, got {count}")
        check_ids("labels", labels, count)
        labels = labels.to(embeddings.device)
        self_mask = torch.eye(count, dtype=torch.bool, device=embeddings.device)
        logits = (embeddings @ embeddings.t() / self.temperature).masked_fill(
            self_mask, float("-inf")
        )
        log_prob = torch.log_softmax(logits, dim=1)
        positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
        num_positives = positives.sum(dim=1)
        has_positive = (num_positives > 0).to(embeddings.dtype)
        per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1)
        per_anchor = per_anchor / num_positives.clamp(min=1).to(embeddings.dtype)
        return (per_anchor * has_positive).sum() / has_positive.sum().clamp(min=1.0)
