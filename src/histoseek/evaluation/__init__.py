"""Evaluation of histoseek: retrieval, cross-modal and classification metrics."""
