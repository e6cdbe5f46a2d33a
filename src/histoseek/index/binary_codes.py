"""Binary codes of unit embeddings for FAISS binary indexes: SimHash (random hyperplanes).

The sign of a random projection keeps angles: two vectors at angle θ differ in a bit with
probability θ/π, so Hamming distance h over b bits estimates cosine as cos(π h / b). The
plain sign of each dimension would not do: embeddings after a ReLU-like head can share the
sign of most dimensions. The hyperplanes come from a fixed seed, so codes are a pure
function of the vector and never need storing beside it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SEED = 20241201


@lru_cache(maxsize=4)
def _hyperplanes(dim: int, bits: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((dim, bits)).astype(np.float32)


def binary_codes(vectors: np.ndarray, bits: int | None = None) -> np.ndarray:
    """``uint8 [n, bits / 8]`` codes of ``vectors [n, d]`` (``bits`` defaults to ``d``)."""
    vectors = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
    bits = bits or vectors.shape[1]
    if bits % 8:
        raise ValueError(f"binary codes need a multiple of 8 bits, got {bits}")
    signs = (vectors @ _hyperplanes(vectors.shape[1], bits)) > 0
    return np.packbits(signs, axis=1)
