"""Training losses of histoseek, one plain ``nn.Module`` per file.

Embeddings reaching these losses are L2-normalised float tensors ``[B, D]``; every
``forward`` checks shapes and raises ``ValueError`` naming the bad argument.
"""

from histoseek.training.losses.clip_infonce import ClipInfoNCE
from histoseek.training.losses.combined import LossWeights, combine
from histoseek.training.losses.fgcr import FGCRLoss, FGCRParts
from histoseek.training.losses.hierarchical import HierarchicalContrast, HierarchicalParts
from histoseek.training.losses.knowledge_alignment import KnowledgeAlignment
from histoseek.training.losses.logit_scale import LogitScale
from histoseek.training.losses.simclr import NTXent
from histoseek.training.losses.subcenter_arcface import SubCenterArcFace
from histoseek.training.losses.supcon import SupCon

__all__ = [
    "ClipInfoNCE",
    "FGCRLoss",
    "FGCRParts",
    "HierarchicalContrast",
    "HierarchicalParts",
    "KnowledgeAlignment",
    "LogitScale",
    "LossWeights",
    "NTXent",
    "SubCenterArcFace",
    "SupCon",
    "combine",
]
