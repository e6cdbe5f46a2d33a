"""NT-Xent, SimCLR's loss, for the self-supervised warm-up on two views per tile."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from histoseek.training.losses._checks import check_float
from histoseek.training.losses.supcon import SupCon


class NTXent(nn.Module):
    """Normalised-temperature cross-entropy (Chen et al., SimCLR, ICML 2020).

    ``embeddings`` stacks two augmented views of ``B`` tiles: rows ``i`` and ``i + B`` are
    the same tile. Each of the ``2B`` rows is an anchor whose only positive is its other
    view and whose negatives are the other ``2B - 2`` rows:

        l_i = -log( exp(z_i.z_j(i) / T) / sum_{a != i} exp(z_i.z_a / T) ),  loss = mean_i l_i

    This is ``SupCon`` with one positive per anchor (the tile level of
    ``HierarchicalContrast``).

    Args:
        temperature: Softmax temperature ``T`` (> 0).

    Raises:
        ValueError: ``temperature`` is not positive.
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.supcon = SupCon(temperature)

    @property
    def temperature(self) -> float:
        """The softmax temperature."""
        return self.supcon.temperature

    def forward(self, embeddings: Tensor) -> Tensor:
        """Return the NT-Xent loss of two stacked views.

        Args:
            embeddings: ``[2B, D]`` float, L2-normalised; rows ``i`` and ``i + B`` are two
                views of tile ``i``.

        Returns:
            0-d float loss.

        Raises:
            ValueError: ``embeddings`` is not 2-D with an even, non-zero number of rows.
        """
        check_float("embeddings", embeddings, 2, (None, None))
        count = embeddings.shape[0]
        if count % 2:
            raise ValueError(
                f"embeddings must stack two views ([2B, D], rows i and i + B paired), "
                f"got an odd number of rows: {count}"
            )
        tile_ids = torch.arange(count // 2, device=embeddings.device).repeat(2)
        return self.supcon(embeddings, tile_ids)
