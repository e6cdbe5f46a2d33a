"""Fused query expansion: unit-norm output, literal unchanged when nothing is expanded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from histoseek.knowledge.abbreviations import spell_out
from histoseek.knowledge.tree import default_tree, expansion_texts
from histoseek.search.text_query import (
    EXPANSION_WEIGHT,
    embed_text_query,
    fuse,
    mention_coverage,
)

DIM = 32


def fake_encode(texts: list[str]) -> np.ndarray:
    """Deterministic pseudo-embedding per text (not unit length, to test normalising)."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(np.random.default_rng(seed).standard_normal(DIM) * 3.0)
    return np.asarray(rows, np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32).reshape(1, -1)


QUERY = "poorly differentiated adenocarcinoma"


def test_the_query_names_an_entity() -> None:
    assert expansion_texts(QUERY)  # otherwise the tests below prove nothing


def test_fused_vector_is_a_unit_float32_row() -> None:
    vector = embed_text_query(fake_encode, QUERY, expand=True)
    assert vector.shape == (1, DIM) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_without_expansion_it_is_the_literal_embedding() -> None:
    vector = embed_text_query(fake_encode, QUERY, expand=False)
    np.testing.assert_allclose(vector, unit(fake_encode([QUERY])[0]), atol=1e-6)


@pytest.mark.parametrize("text", ["a cat sat on the mat", "specimen received in formalin"])
def test_text_naming_no_entity_is_unchanged(text: str) -> None:
    assert expansion_texts(text) == []
    np.testing.assert_allclose(embed_text_query(fake_encode, text, expand=True),
                               unit(fake_encode([text])[0]), atol=1e-6)


def test_expansion_is_fused_not_concatenated_and_the_literal_dominates() -> None:
    literal = unit(fake_encode([QUERY])[0])
    extra = expansion_texts(QUERY)
    expansion = unit(np.mean([unit(v)[0] for v in fake_encode(extra)], axis=0))
    fused = embed_text_query(fake_encode, QUERY, expand=True)
    weight = EXPANSION_WEIGHT * mention_coverage(QUERY, default_tree())
    np.testing.assert_allclose(fused, fuse(literal, expansion, weight), atol=1e-6)
    assert EXPANSION_WEIGHT < 1.0
    assert (fused @ literal.T).item() > (fused @ expansion.T).item()


def test_weight_zero_gives_the_literal_embedding() -> None:
    np.testing.assert_allclose(embed_text_query(fake_encode, QUERY, expand=True, weight=0.0),
                               unit(fake_encode([QUERY])[0]), atol=1e-6)


@pytest.mark.parametrize(("query", "coverage"), [
    ("high-grade intraepithelial neoplasia", 1.0),   # the whole query names the entity
    ("poorly differentiated adenocarcinoma", 1 / 3),  # only "adenocarcinoma" is a mention
    ("a cat sat on the mat", 0.0),
    ("of the", 0.0),                                  # function words only
])
def test_mention_coverage(query: str, coverage: float) -> None:
    assert mention_coverage(query, default_tree()) == pytest.approx(coverage)


def test_abbreviations_are_spelled_out_before_embedding() -> None:
    seen: list[list[str]] = []

    def recording_encode(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        return fake_encode(texts)

    embed_text_query(recording_encode, "TA with LGD", expand=True)
    assert seen[0][0] == "tubular adenoma with low-grade dysplasia"
    seen.clear()
    embed_text_query(recording_encode, "TA with LGD", expand=False)
    assert seen == [["TA with LGD"]]  # --no-expand: exactly as typed


@pytest.mark.parametrize(("text", "expected"), [
    ("HGIN", "high-grade intraepithelial neoplasia"),
    ("SSA/P", "sessile serrated adenoma/polyp"),        # the longer key wins over "SSA"
    ("HP gastritis", "Helicobacter pylori gastritis"),  # context: not "hyperplastic polyp"
    ("NET G1", "neuroendocrine tumour grade 1"),
    ("the net effect on CD20", "the net effect on CD20"),  # case and whole words matter
    ("HGINs", "HGINs"),
])
def test_spell_out(text: str, expected: str) -> None:
    assert spell_out(text) == expected
