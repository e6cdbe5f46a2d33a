"""SimHash binary codes: shape, determinism, and Hamming distance as an angle estimate."""

from __future__ import annotations

import numpy as np
import pytest

from histoseek.index.binary_codes import binary_codes


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between rows of two packed code arrays."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1)


def pairs_at_known_cosines(n: int, dim: int, seed: int = 1
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit rows ``a``, ``b`` whose cosines are spread evenly over (-1, 1)."""
    a = unit_rows(n, dim, seed)
    other = unit_rows(n, dim, seed + 1000)
    other -= (other * a).sum(axis=1, keepdims=True) * a  # orthogonal to a
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    angles = np.linspace(0.02, np.pi - 0.02, n)
    b = np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * other
    return a, b.astype(np.float32), np.cos(angles)


def test_shape_and_dtype() -> None:
    vectors = unit_rows(7, 64)
    codes = binary_codes(vectors, bits=256)
    assert codes.shape == (7, 32) and codes.dtype == np.uint8
    default = binary_codes(vectors)  # bits default to the dimension
    assert default.shape == (7, 8) and default.dtype == np.uint8


def test_codes_are_deterministic_and_per_row() -> None:
    vectors = unit_rows(20, 48, seed=3)
    first = binary_codes(vectors, bits=128)
    assert np.array_equal(first, binary_codes(vectors.copy(), bits=128))
    # a row's code does not depend on the batch it came in
    assert np.array_equal(first[5:6], binary_codes(vectors[5:6], bits=128))
    assert np.array_equal(first[::-1], binary_codes(vectors[::-1], bits=128))


def test_codes_depend_on_direction_only() -> None:
    vectors = unit_rows(10, 32, seed=4)
    assert np.array_equal(binary_codes(vectors), binary_codes(3.5 * vectors))
    # the opposite vector lies on the other side of every hyperplane
    assert np.all(hamming(binary_codes(vectors), binary_codes(-vectors)) == 32)


def test_distinct_vectors_get_distinct_codes() -> None:
    codes = binary_codes(unit_rows(50, 64, seed=5), bits=256)
    assert len({row.tobytes() for row in codes}) == 50


def test_hamming_estimates_cosine() -> None:
    bits = 512
    a, b, true_cos = pairs_at_known_cosines(200, 96)
    h = hamming(binary_codes(a, bits), binary_codes(b, bits))
    estimate = np.cos(np.pi * h / bits)
    assert np.mean(np.abs(estimate - true_cos)) < 0.15
    assert np.corrcoef(estimate, true_cos)[0, 1] > 0.95
    # near-identical vectors: few differing bits; opposite ones: nearly all
    assert h[0] < 0.1 * bits and h[-1] > 0.9 * bits


def test_more_bits_estimate_better() -> None:
    a, b, true_cos = pairs_at_known_cosines(300, 64, seed=7)

    def error(bits: int) -> float:
        h = hamming(binary_codes(a, bits), binary_codes(b, bits))
        return float(np.mean(np.abs(np.cos(np.pi * h / bits) - true_cos)))

    assert error(1024) < error(64)


@pytest.mark.parametrize("bits", [12, 100, 7])
def test_bits_not_a_multiple_of_8_raise(bits: int) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        binary_codes(unit_rows(3, 16), bits=bits)


def test_default_bits_follow_the_dimension_and_must_be_a_multiple_of_8() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        binary_codes(unit_rows(3, 106))  # e.g. the 106-d classic encoder
