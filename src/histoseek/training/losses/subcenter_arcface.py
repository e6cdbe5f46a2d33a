"""Sub-center ArcFace: a margin softmax over K learned centres per class."""

from __future__ import annotations

import math

from pytorch_metric_learning.losses import SubCenterArcFaceLoss
from torch import Tensor, nn

from histoseek.training.losses._checks import check_float, check_ids, check_labels_in_range


class SubCenterArcFace(nn.Module):
    """Sub-center ArcFace loss (Deng et al., ECCV 2020) on labelled tile embeddings.

    A thin, typed wrapper over ``pytorch_metric_learning.losses.SubCenterArcFaceLoss``:
    each class owns ``sub_centers`` learned unit directions; a sample's class cosine is the
    largest cosine to that class's sub-centres, the target class gets an additive angular
    margin, and a softmax cross-entropy over ``scale * cosine`` is averaged over the batch.
    Several sub-centres let a class (e.g. tumour) keep distinct morphologies, and noisy
    tiles settle on a minor sub-centre instead of dragging the main one.

    The centres are trainable parameters of this module: give them to the optimizer
    (``loss.parameters()``), usually with a larger learning rate than the backbone.

    Args:
        embedding_dim: Size ``D`` of the embeddings.
        num_classes: Number of classes ``C``.
        sub_centers: Sub-centres ``K`` per class (``K = 1`` is plain ArcFace).
        margin_deg: Additive angular margin in degrees (pytorch-metric-learning's
            convention; 28.6 degrees is 0.5 rad, the paper's value), in ``[0, 90)``.
        scale: Multiplier ``s`` of the cosines before the softmax.

    Raises:
        ValueError: A size is not positive or the margin or scale is out of range.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        sub_centers: int = 3,
        margin_deg: float = 28.6,
        scale: float = 64.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("num_classes", num_classes),
            ("sub_centers", sub_centers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (0.0 <= margin_deg < 90.0):
            raise ValueError(f"margin_deg must be in [0, 90) degrees, got {margin_deg}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite float, got {scale}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.sub_centers = sub_centers
        self.margin_deg = margin_deg
        self.scale = scale
        self.loss = SubCenterArcFaceLoss(
            num_classes=num_classes,
            embedding_size=embedding_dim,
            margin=margin_deg,
            scale=scale,
            sub_centers=sub_centers,
        )

    @property
    def centers(self) -> Tensor:
        """The class sub-centres as a ``[C, K, D]`` view of the trainable weight.

        Rows are not normalised (the loss uses cosines); this view shares storage and
        gradient with the parameter, so use ``.detach()`` for inspection.
        """
        weight: Tensor = self.loss.W  # [D, C * K], column c * K + k is centre k of class c
        return weight.t().reshape(self.num_classes, self.sub_centers, self.embedding_dim)

    def logits(self, embeddings: Tensor) -> Tensor:
        """Return ``scale * cos`` to each class's nearest sub-centre, without margin.

        Args:
            embeddings: ``[B, D]`` float embeddings.

        Returns:
            ``[B, C]`` float class scores (for accuracy or zero-margin prediction).

        Raises:
            ValueError: ``embeddings`` is not ``[B, D]``.
        """
        check_float("embeddings", embeddings, 2, (None, self.embedding_dim))
        self.loss.cast_types(embeddings.dtype, embeddings.device)
        return self.loss.get_logits(embeddings)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Return the mean sub-center ArcFace loss of the batch.

        Args:
            embeddings: ``[B, D]`` float embeddings (normalised or not; cosines are used).
            labels: ``[B]`` integer class indices in ``[0, C)``.

        Returns:
            0-d float loss.

        Raises:
            ValueError: Shapes or dtypes do not match, or a label is out of range.
        """
        check_float("embeddings", embeddings, 2, (None, self.embedding_dim))
        check_ids("labels", labels, embeddings.shape[0])
        check_labels_in_range("labels", labels, self.num_classes)
        return self.loss(embeddings, labels.long())
