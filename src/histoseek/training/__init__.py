"""Training of histoseek models: losses for metric, cross-modal and self-supervised learning.

Nothing here is imported by search or indexing; ``histoseek.training.losses`` holds one
plain ``nn.Module`` per loss.
"""
