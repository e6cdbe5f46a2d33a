"""Knowledge alignment: pull each image to its class's text prototype (KEP-style)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from histoseek.evaluation.prototypes import class_prototypes
from histoseek.training.losses._checks import (
    check_float,
    check_ids,
    check_labels_in_range,
)
from histoseek.training.losses.logit_scale import LogitScale


class KnowledgeAlignment(nn.Module):
    """Cross-entropy of images against class prototypes built from knowledge prompts.

    As in KEP (knowledge-enhanced pathology pre-training), each class is described by
    ``P`` prompt sentences (definitions, synonyms, morphology) already embedded and
    projected into the joint space. A class prototype is the mean of its valid prompt
    embeddings, renormalised:

        t_c = normalise( sum_p m_cp * e_cp / sum_p m_cp )
        loss = mean_b  -log softmax_c( z_b . t_c / T )[y_b]

    so each image is pulled to its own class's knowledge and pushed from every other
    class's. All ``C`` classes are in the softmax, whether present in the batch or not.

    With ``margin`` m > 0 the own-class cosine is lowered to ``z_b . t_y - m`` before the
    softmax (an additive cosine margin, as in CosFace): an image must be closer to its own
    class's knowledge than to any other by m, not just closer, so the text prototypes become
    a classifier with a margin, which is what zero-shot classification of new cases uses.

    Args:
        temperature: Softmax temperature ``T`` (initial value when learnable).
        learnable: Learn ``T`` (as a log logit scale).
        min_temperature: Lower bound on a learned ``T``; ignored when fixed.
        margin: Additive cosine margin on the own class, in ``[0, 1)``; ``0`` is plain
            cross-entropy.

    Raises:
        ValueError: A temperature or the margin is out of range.
    """

    def __init__(
        self, temperature: float = 0.07, learnable: bool = False, min_temperature: float = 0.01,
        margin: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        self.logit_scale = LogitScale(temperature, learnable, min_temperature)
        self.margin = float(margin)

    @staticmethod
    def prototypes(class_text_emb: Tensor, prompt_mask: Tensor | None = None) -> Tensor:
        """Return one unit prototype per class: the renormalised mean of its valid prompts.

        The one definition in ``histoseek.evaluation.prototypes``, so zero-shot evaluation
        scores against exactly what this loss trains.

        Args:
            class_text_emb: ``[C, P, D]`` float prompt embeddings.
            prompt_mask: ``[C, P]`` bool, ``True`` for real prompts; ``None`` means all.

        Returns:
            ``[C, D]`` float unit vectors (also usable for zero-shot classification).

        Raises:
            ValueError: Bad shapes, or a class with no valid prompt.
        """
        return class_prototypes(class_text_emb, prompt_mask)

    def forward(
        self,
        image_emb: Tensor,
        labels: Tensor,
        class_text_emb: Tensor,
        prompt_mask: Tensor | None = None,
    ) -> Tensor:
        """Return the mean cross-entropy of images against the class prototypes.

        Args:
            image_emb: ``[B, D]`` float, L2-normalised image embeddings.
            labels: ``[B]`` integer class indices in ``[0, C)``.
            class_text_emb: ``[C, P, D]`` float, projected and normalised prompt embeddings.
            prompt_mask: ``[C, P]`` bool, ``True`` where a class has a real prompt (classes
                with fewer than ``P`` prompts are padded); ``None`` means all are valid.

        Returns:
            0-d float loss.

        Raises:
            ValueError: Shapes or dtypes do not match, a label is out of range, or a class
                has no valid prompt.
        """
        check_float("image_emb", image_emb, 2, (None, None))
        batch, dim = image_emb.shape
        check_ids("labels", labels, batch)
        check_float("class_text_emb", class_text_emb, 3, (None, None, dim))
        check_labels_in_range("labels", labels, class_text_emb.shape[0])
        prototypes = self.prototypes(class_text_emb, prompt_mask)
        cosines = image_emb @ prototypes.t()
        if self.margin > 0:
            own = F.one_hot(labels.long(), cosines.shape[1]).to(cosines.dtype)
            cosines = cosines - self.margin * own
        return F.cross_entropy(self.logit_scale() * cosines, labels.long())
