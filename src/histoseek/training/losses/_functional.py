"""Small tensor helpers shared by the contrastive losses (no state, no parameters)."""

from __future__ import annotations

import torch
from torch import Tensor


def grouped_cross_entropy(logits: Tensor, ids: Tensor) -> Tensor:
    """Cross-entropy per row where columns sharing an id count as one pooled class.

    Row ``i`` and column ``j`` both belong to group ``ids[i]`` / ``ids[j]``. Columns of
    one group are pooled by log-mean-exp, and row ``i`` must pick its own group:

        g_i(u) = log( mean_{j: ids[j] = u} exp(logits[i, j]) )
        loss_i = logsumexp_u g_i(u) - g_i(ids[i])

    When the columns of a group are identical (a caption repeated in the batch) this is
    exactly the cross-entropy against the de-duplicated columns, so repeats are neither
    negatives of each other nor counted twice as negatives. With all ids distinct it is
    ``F.cross_entropy(logits, arange(n), reduction="none")``.

    Args:
        logits: ``[n, n]`` float scores, rows and columns indexed by the same items.
        ids: ``[n]`` integer group ids (any values; compacted here).

    Returns:
        ``[n]`` float per-row losses.
    """
    n = logits.shape[0]
    _, group, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    num_groups = counts.numel()
    index = group.unsqueeze(0).expand(n, n)
    # The per-group maximum is only a shift for stability, so it carries no gradient.
    group_max = logits.new_full((n, num_groups), float("-inf")).scatter_reduce(
        1, index, logits.detach(), reduce="amax", include_self=True
    )
    shifted = (logits - group_max.gather(1, index)).exp()
    group_sum = logits.new_zeros((n, num_groups)).scatter_add(1, index, shifted)
    group_logits = group_sum.log() + group_max - counts.to(logits.dtype).log()
    own = group_logits.gather(1, group.unsqueeze(1)).squeeze(1)
    return torch.logsumexp(group_logits, dim=1) - own


def multi_positive_cross_entropy(logits: Tensor, positives: Tensor) -> Tensor:
    """Cross-entropy per row against a uniform target over that row's positive columns.

        loss_i = -1/|P_i| * sum_{j in P_i} log softmax(logits[i])_j

    Args:
        logits: ``[n, m]`` float scores.
        positives: ``[n, m]`` bool, at least one ``True`` per row.

    Returns:
        ``[n]`` float per-row losses.
    """
    log_prob = torch.log_softmax(logits, dim=1)
    picked = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -picked / positives.sum(dim=1).to(logits.dtype)
