"""Hierarchical contrast over tile, slide and patient (HLSS-style, MICCAI 2024)."""

from __future__ import annotations

import math
from typing import NamedTuple

from torch import Tensor, nn

from histoseek.training.losses._checks import check_float, check_ids
from histoseek.training.losses.supcon import SupCon


class HierarchicalParts(NamedTuple):
    """The weighted total and the unweighted SupCon loss of each level (0-d tensors)."""

    total: Tensor
    tile: Tensor
    slide: Tensor
    patient: Tensor


class HierarchicalContrast(nn.Module):
    """Supervised contrast at three levels of the tile -> slide -> patient hierarchy.

    As in HLSS (hierarchical self-supervision for histopathology), the same ``SupCon``
    loss is applied three times with different positives:

    * tile: the other augmented view of the same tile;
    * slide: every other row from the same slide (both views of all its tiles);
    * patient: every other row from the same patient (case / ``source_id``).

        total = w_tile * L_tile + w_slide * L_slide + w_patient * L_patient

    At each level anchors without a positive (a slide with a single tile in the batch, a
    patient with a single slide-tile) are skipped; a level where no anchor has a positive
    contributes an exact zero. All rows are negatives of one another except for the
    positives of that level.

    Args:
        temperature: Softmax temperature of all three levels (> 0).
        weights: ``(w_tile, w_slide, w_patient)``, each finite and ``>= 0``.

    Raises:
        ValueError: ``temperature`` is not positive or ``weights`` is malformed.
    """

    def __init__(
        self, temperature: float = 0.1, weights: tuple[float, float, float] = (1.0, 0.5, 0.5)
    ) -> None:
        super().__init__()
        if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(
                f"weights must be three finite floats >= 0 (tile, slide, patient), got {weights}"
            )
        self.weights = tuple(float(w) for w in weights)
        self.supcon = SupCon(temperature)

    def forward(
        self, embeddings: Tensor, tile_ids: Tensor, slide_ids: Tensor, patient_ids: Tensor
    ) -> HierarchicalParts:
        """Return the weighted total and each level's SupCon loss.

        Args:
            embeddings: ``[N, D]`` float, L2-normalised; two views stacked (``N = 2B``,
                rows ``i`` and ``i + B`` are the same tile), though only the ids matter.
            tile_ids: ``[N]`` integer tile id of each row.
            slide_ids: ``[N]`` integer slide id of each row.
            patient_ids: ``[N]`` integer patient (case) id of each row.

        Returns:
            ``HierarchicalParts`` of 0-d float tensors.

        Raises:
            ValueError: Shapes or dtypes do not match, or ``N < 2``.
        """
        check_float("embeddings", embeddings, 2, (None, None))
        count = embeddings.shape[0]
        check_ids("tile_ids", tile_ids, count)
        check_ids("slide_ids", slide_ids, count)
        check_ids("patient_ids", patient_ids, count)
        tile = self.supcon(embeddings, tile_ids)
        slide = self.supcon(embeddings, slide_ids)
        patient = self.supcon(embeddings, patient_ids)
        w_tile, w_slide, w_patient = self.weights
        total = w_tile * tile + w_slide * slide + w_patient * patient
        return HierarchicalParts(total=total, tile=tile, slide=slide, patient=patient)
