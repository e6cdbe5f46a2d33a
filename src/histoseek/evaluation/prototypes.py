"""Class prototypes: a class's text vector is the renormalised mean of its prompt embeddings.

Zero-shot evaluation, per-epoch validation and the knowledge-alignment loss all score images
against these vectors; one definition keeps what training optimises and what evaluation
measures the same thing. Numpy serves encoder outputs, torch serves training (with gradients).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

import numpy as np

from histoseek.encoders.base import l2_normalise

if TYPE_CHECKING:
    from torch import Tensor


@overload
def class_prototypes(embeddings: Tensor, prompt_mask: Tensor | None = None) -> Tensor: ...
@overload
def class_prototypes(embeddings: Sequence[np.ndarray] | np.ndarray,
                     prompt_mask: np.ndarray | None = None) -> np.ndarray: ...
def class_prototypes(embeddings, prompt_mask=None):  # type: ignore[no-untyped-def]
    """One unit vector per class: the mean of its valid prompt embeddings, renormalised.

    Args:
        embeddings: numpy ``[P_c, D]`` arrays, one per class (counts may differ), or a
            ``[C, P, D]`` array; or a torch ``[C, P, D]`` float tensor.
        prompt_mask: ``[C, P]`` bool, ``True`` for real prompts (padded packs); ``None``: all.

    Returns:
        ``[C, D]`` unit rows: float32 numpy for numpy input, a torch tensor (graph kept) for
        torch input.

    Raises:
        ValueError: Bad shapes, or a class with no valid prompt.
    """
    if isinstance(embeddings, np.ndarray | Sequence):
        return _numpy_prototypes(embeddings, prompt_mask)
    return _torch_prototypes(embeddings, prompt_mask)


def _numpy_prototypes(embeddings: Sequence[np.ndarray] | np.ndarray,
                      prompt_mask: np.ndarray | None) -> np.ndarray:
    groups = [np.asarray(e) for e in embeddings]
    if prompt_mask is not None:
        groups = [e[np.asarray(m, bool)] for e, m in zip(groups, prompt_mask, strict=True)]
    empty = [c for c, e in enumerate(groups) if len(e) == 0]
    if empty:
        raise ValueError(f"classes {empty} have no prompt embedding; every class needs one")
    return l2_normalise(np.stack([e.mean(axis=0) for e in groups]))


def _torch_prototypes(class_text_emb: Tensor, prompt_mask: Tensor | None) -> Tensor:
    import torch.nn.functional as F

    # imported here: the losses package imports this module
    from histoseek.training.losses._checks import check_float, check_mask

    check_float("class_text_emb", class_text_emb, 3, (None, None, None))
    num_classes, num_prompts, _ = class_text_emb.shape
    if prompt_mask is None:
        mean = class_text_emb.mean(dim=1)
    else:
        check_mask("prompt_mask", prompt_mask, (num_classes, num_prompts))
        empty = (prompt_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"classes {empty} have no valid prompt in prompt_mask; every class "
                "needs at least one prompt embedding"
            )
        weights = prompt_mask.to(class_text_emb.dtype).unsqueeze(-1)
        mean = (class_text_emb * weights).sum(dim=1) / weights.sum(dim=1)
    return F.normalize(mean, dim=-1)
