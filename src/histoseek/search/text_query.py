"""Embed a text query with knowledge-base expansion fused in, the literal query staying dominant.

Appending an entity's attribute sentences to a short query (the old
:func:`histoseek.knowledge.tree.expand_query`) lets the attributes outweigh the words the user
typed: "poorly differentiated adenocarcinoma" then ranked the one report saying exactly that
4th. Here the literal query and each mentioned entity's expansion text are embedded
separately and fused as ``normalise(q_literal + weight * q_expansion)``. With unit vectors and
inner-product search that equals scoring ``cos(doc, q_literal) + weight * cos(doc,
q_expansion)`` (up to a positive factor per query), so with ``weight < 1`` the literal match
counts most and the expansion only adds evidence. The weight was chosen on the development
half of ``tests/data/text_queries``; ``benchmarks/bench_text_expansion.py`` writes the evidence to
``docs/text-expansion.json``.

Two refinements keep expansion from hurting:

- abbreviations are spelled out first (``knowledge.abbreviations``): "TA with LGD" is embedded
  as "tubular adenoma with low-grade dysplasia";
- the weight shrinks with the share of the query's words the mentions cover: "hamartomatous
  polyp" mentions only the generic "polyp" entity, whose description would pull the query
  toward other polyps, so it gets half the weight that "colorectal polyp" gets.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from histoseek.encoders.base import l2_normalise
from histoseek.knowledge.abbreviations import spell_out
from histoseek.knowledge.tree import KnowledgeTree, default_tree, expansion_texts

EXPANSION_WEIGHT = 0.4
"""Weight of the expansion embedding relative to the literal one, for text → reports (the
``minilm`` space; chosen on the dev half of ``tests/data/text_queries``)."""

IMAGE_EXPANSION_WEIGHT = 0.0
"""The same for text → tiles and slides (the image encoder's text tower): abbreviations are
spelled out, no sentences are fused in. Chosen on the dev half of the EBHI class prompts by
the reports' rule (no prompt type may lose): with histoseek-base every weight above 0 cost
the name prompts nDCG@10 (0.954 → 0.927: "colorectal polyp" drifts to its neighbours)."""

EncodeTexts = Callable[[list[str]], np.ndarray]

_WORD = re.compile(r"\w+")
_FUNCTION_WORDS = frozenset({"a", "an", "and", "the", "of", "with", "in", "on", "or", "for",
                             "to", "by", "at", "from", "no", "not", "without"})


def mention_coverage(text: str, tree: KnowledgeTree) -> float:
    """Share of ``text``'s content words inside knowledge-base mentions that expansion speaks
    for (0 to 1): a subtype's words are not, its entity's sentences being broader."""
    spans = [(start, end) for _entity, start, end in tree.expandable_spans(text)]
    words = [m for m in _WORD.finditer(text) if m.group(0).casefold() not in _FUNCTION_WORDS]
    if not words:
        return 0.0
    covered = sum(any(s <= w.start() and w.end() <= e for s, e in spans) for w in words)
    return covered / len(words)


def fuse(literal: np.ndarray, expansion: np.ndarray, weight: float) -> np.ndarray:
    """``normalise(literal + weight * normalise(expansion))`` as a ``[1, d]`` float32 row."""
    literal = l2_normalise(np.asarray(literal, np.float32).reshape(1, -1))
    expansion = l2_normalise(np.asarray(expansion, np.float32).reshape(1, -1))
    return l2_normalise(literal + np.float32(weight) * expansion)


def embed_text_query(encode_texts: EncodeTexts, text: str, expand: bool = True, *,
                     weight: float = EXPANSION_WEIGHT,
                     tree: KnowledgeTree | None = None) -> np.ndarray:
    """The query's ``[1, d]`` float32 unit vector, for inner-product search.

    Args:
        encode_texts: a text tower (``encoder.encode_texts``) returning one row per text.
        text: the query as typed.
        expand: spell out abbreviations, then fuse in the name and attribute sentences of
            every knowledge-base entity the query mentions (mean of their unit embeddings); a
            query naming none is embedded as spelled out. False embeds the text as typed.
        weight: weight of the expansion when the mentions cover the whole query; it shrinks
            with their coverage. Below 1 the literal query dominates.
        tree: knowledge tree (default: the packaged one).
    """
    if not expand:
        return l2_normalise(np.asarray(encode_texts([text]), np.float32)[:1])
    tree = default_tree() if tree is None else tree
    query = spell_out(text)
    extra = expansion_texts(query, tree) if weight > 0 else []
    vectors = np.asarray(encode_texts([query, *extra]), np.float32)
    literal = l2_normalise(vectors[:1])
    if not extra:
        return literal
    return fuse(literal, l2_normalise(vectors[1:]).mean(axis=0),
                weight * mention_coverage(query, tree))
