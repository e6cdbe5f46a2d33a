"""FGCR's multivariate cross-modal loss, adapted to tiles (instance + region terms)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from histoseek.training.losses._checks import check_float, check_ids, check_mask
from histoseek.training.losses._functional import grouped_cross_entropy
from histoseek.training.losses.clip_infonce import ClipInfoNCE


class FGCRParts(NamedTuple):
    """The weighted total and the unweighted instance and region losses (0-d tensors)."""

    total: Tensor
    instance: Tensor
    region: Tensor


class FGCRLoss(nn.Module):
    """Instance-level plus region-to-attribute contrast (FGCR, Med Image Anal 2024).

    FGCR aligns a whole image with its report and, at a finer grain, image regions with
    the attribute sentences that describe them. For tiles:

    **Instance term**: ``ClipInfoNCE`` with a fixed temperature ``T`` between ``image_emb``
    and ``text_emb`` (rows paired; ``text_ids`` merges repeated texts).

    **Region term**: with ``x_br`` region ``r`` of tile ``b``, ``a_ck`` attribute ``k`` of
    tile ``c`` and ``V_c`` the valid attributes of ``c`` (``attribute_mask``):

        s_brc = log( 1/|V_c| * sum_{k in V_c} exp(x_br . a_ck / T) )    (soft max over k)
        S_bc  = 1/R * sum_r s_brc                                       (tile b vs set c)
        L_region = mean_b  -log softmax_c( S_bc )[b]

    i.e. each tile's regions, scored against every attribute set of the batch, must fit
    their own tile's set best (cross-entropy over the ``B`` tiles). The log-mean-exp, not
    log-sum-exp, keeps sets with more attributes from scoring higher by count alone. With
    ``attribute_ids`` (tiles of one class share one attribute set), columns with the same
    id are pooled by log-mean-exp and tile ``b`` must pick its id (``grouped_cross_entropy``),
    so identical sets are not negatives of each other.

        total = instance_weight * L_instance + region_weight * L_region

    Cost: the region term builds a ``[B * R, B * A]`` similarity matrix.

    Args:
        instance_weight: Weight of the instance term (``>= 0``).
        region_weight: Weight of the region term (``>= 0``).
        temperature: Temperature ``T`` of both terms (fixed, > 0).

    Raises:
        ValueError: A weight is negative or the temperature is not positive.
    """

    def __init__(
        self, instance_weight: float = 1.0, region_weight: float = 1.0, temperature: float = 0.07
    ) -> None:
        super().__init__()
        for name, value in (("instance_weight", instance_weight), ("region_weight", region_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite float >= 0, got {value}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite float, got {temperature}")
        self.instance_weight = float(instance_weight)
        self.region_weight = float(region_weight)
        self.temperature = float(temperature)
        self.instance = ClipInfoNCE(temperature=temperature, learnable=False)

    def region_scores(
        self, region_emb: Tensor, attribute_emb: Tensor, attribute_mask: Tensor | None = None
    ) -> Tensor:
        """Return ``S[b, c]``, the soft fit of tile ``b``'s regions to tile ``c``'s attributes.

        Args:
            region_emb: ``[B, R, D]`` float, normalised region embeddings.
            attribute_emb: ``[B, A, D]`` float, normalised attribute-sentence embeddings.
            attribute_mask: ``[B, A]`` bool, ``True`` for real attributes; ``None``: all.

        Returns:
            ``[B, B]`` float scores (see the class docstring for the formula).

        Raises:
            ValueError: Shapes do not match, or a tile has no valid attribute.
        """
        check_float("region_emb", region_emb, 3, (None, None, None))
        batch, regions, dim = region_emb.shape
        check_float("attribute_emb", attribute_emb, 3, (batch, None, dim))
        attributes = attribute_emb.shape[1]
        if attribute_mask is None:
            attribute_mask = torch.ones(
                batch, attributes, dtype=torch.bool, device=attribute_emb.device
            )
        check_mask("attribute_mask", attribute_mask, (batch, attributes))
        attribute_mask = attribute_mask.to(attribute_emb.device)
        counts = attribute_mask.sum(dim=1)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"tiles {empty} have no valid attribute in attribute_mask; every tile needs "
                "at least one attribute embedding"
            )
        sim = region_emb.reshape(batch * regions, dim) @ attribute_emb.reshape(-1, dim).t()
        sim = sim.view(batch, regions, batch, attributes) / self.temperature  # [b, r, c, k]
        sim = sim.masked_fill(~attribute_mask.view(1, 1, batch, attributes), float("-inf"))
        per_region = torch.logsumexp(sim, dim=3) - counts.to(sim.dtype).log()  # [b, r, c]
        return per_region.mean(dim=1)

    def forward(
        self,
        image_emb: Tensor,
        text_emb: Tensor,
        region_emb: Tensor,
        attribute_emb: Tensor,
        attribute_mask: Tensor | None = None,
        text_ids: Tensor | None = None,
        attribute_ids: Tensor | None = None,
    ) -> FGCRParts:
        """Return the weighted total and the instance and region losses.

        Args:
            image_emb: ``[B, D]`` float, normalised tile embeddings.
            text_emb: ``[B, D]`` float, normalised text embeddings paired with the tiles.
            region_emb: ``[B, R, D]`` float, normalised embeddings of ``R`` anchor regions
                (sub-crops or token groups) of each tile.
            attribute_emb: ``[B, A, D]`` float, normalised embeddings of the attribute
                sentences of each tile's class, padded to ``A``.
            attribute_mask: ``[B, A]`` bool, ``True`` for real attributes; ``None``: all.
            text_ids: ``[B]`` integer text ids for the instance term (equal = same text);
                ``None``: all distinct.
            attribute_ids: ``[B]`` integer attribute-set ids for the region term (usually
                the class); ``None``: every tile's set is treated as distinct.

        Returns:
            ``FGCRParts`` of 0-d float tensors.

        Raises:
            ValueError: Shapes or dtypes do not match, or a tile has no valid attribute.
        """
        check_float("image_emb", image_emb, 2, (None, None))
        batch, dim = image_emb.shape
        check_float("text_emb", text_emb, 2, (batch, dim))
        check_float("region_emb", region_emb, 3, (batch, None, dim))
        check_float("attribute_emb", attribute_emb, 3, (batch, None, dim))
        instance = self.instance(image_emb, text_emb, text_ids)
        scores = self.region_scores(region_emb, attribute_emb, attribute_mask)
        if attribute_ids is None:
            targets = torch.arange(batch, device=scores.device)
            region = F.cross_entropy(scores, targets)
        else:
            check_ids("attribute_ids", attribute_ids, batch)
            region = grouped_cross_entropy(scores, attribute_ids.to(scores.device)).mean()
        total = self.instance_weight * instance + self.region_weight * region
        return FGCRParts(total=total, instance=instance, region=region)
