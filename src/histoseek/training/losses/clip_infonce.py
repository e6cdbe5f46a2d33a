"""Symmetric image-text InfoNCE (CLIP) with repeated texts treated as one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from histoseek.training.losses._checks import check_float, check_ids
from histoseek.training.losses._functional import (
    grouped_cross_entropy,
    multi_positive_cross_entropy,
)
from histoseek.training.losses.logit_scale import LogitScale


class ClipInfoNCE(nn.Module):
    """Symmetric InfoNCE between row-paired image and text embeddings (CLIP).

    With ``L = s * Z_img @ Z_txt.T`` (``s = 1 / T``, learnable by default, CLIP's init
    ``1/0.07`` and cap ``100``) and no ``text_ids`` this is CLIP's loss:

        loss = ( CE(L, arange B) + CE(L.T, arange B) ) / 2

    With ``text_ids`` (rows with the same id carry the same caption or class description),
    the batch is read as if each distinct text appeared once:

    * image -> text: the columns of one id are pooled by log-mean-exp and each image picks
      its id among the ``U`` distinct ids (``grouped_cross_entropy``). For repeated,
      identical texts this is exactly the cross-entropy against the de-duplicated texts.
    * text -> image: text ``j`` has as positives every image whose id equals ``ids[j]``;
      its loss is the cross-entropy against the uniform target on those images, and rows
      are averaged over distinct texts (each row weighted ``1 / n_id``, divided by ``U``).

    So images sharing a text are never pushed apart through it.

    Args:
        temperature: Initial ``T`` (CLIP: 0.07, i.e. logit scale ``1/0.07``).
        learnable: Learn ``T`` (as a log logit scale, like CLIP).
        min_temperature: Lower bound on a learned ``T`` (CLIP: 0.01, i.e. scale cap 100).

    Raises:
        ValueError: A temperature is out of range (see ``LogitScale``).
    """

    def __init__(
        self, temperature: float = 0.07, learnable: bool = True, min_temperature: float = 0.01
    ) -> None:
        super().__init__()
        self.logit_scale = LogitScale(temperature, learnable, min_temperature)

    def forward(
        self, image_emb: Tensor, text_emb: Tensor, text_ids: Tensor | None = None
    ) -> Tensor:
        """Return the symmetric InfoNCE loss of a batch of image-text pairs.

        Args:
            image_emb: ``[B, D]`` float, L2-normalised image embeddings.
            text_emb: ``[B, D]`` float, L2-normalised text embeddings; row ``i`` describes
                image ``i``.
            text_ids: ``[B]`` integer id of each row's text; equal ids mark the same text
                (or class description). ``None`` means every text is distinct.

        Returns:
            0-d float loss.

        Raises:
            ValueError: Shapes or dtypes do not match.
        """
        check_float("image_emb", image_emb, 2, (None, None))
        check_float("text_emb", text_emb, 2, tuple(image_emb.shape))
        logits = self.logit_scale() * image_emb @ text_emb.t()
        if text_ids is None:
            targets = torch.arange(logits.shape[0], device=logits.device)
            return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        check_ids("text_ids", text_ids, image_emb.shape[0])
        text_ids = text_ids.to(logits.device)
        image_to_text = grouped_cross_entropy(logits, text_ids).mean()
        same = text_ids.unsqueeze(0) == text_ids.unsqueeze(1)  # [B, B], symmetric
        per_text = multi_positive_cross_entropy(logits.t(), same)
        copies = same.sum(dim=1).to(logits.dtype)  # n_id of each row
        num_distinct = (1.0 / copies).sum()
        text_to_image = (per_text / copies).sum() / num_distinct
        return 0.5 * (image_to_text + text_to_image)
