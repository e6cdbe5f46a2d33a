"""Pathology knowledge tree (KEP-style): organs -> entities -> H&E attribute sentences.

Used for zero-shot class prompts, knowledge-guided training and text-query expansion.
"""

from histoseek.knowledge.tree import (
    COMPARATIVE_KINDS,
    DEFAULT_TEMPLATES,
    EBHI_SEG_CLASSES,
    MIN_ATTRIBUTES,
    NCT_CRC_HE_CLASSES,
    Entity,
    KnowledgeTree,
    Organ,
    attribute_sentences,
    class_prompts,
    default_tree,
    expand_query,
    expansion_texts,
    load_tree,
    normalise,
    write_classes_yaml,
    zero_shot_classes,
)

__all__ = [
    "COMPARATIVE_KINDS",
    "DEFAULT_TEMPLATES",
    "EBHI_SEG_CLASSES",
    "MIN_ATTRIBUTES",
    "NCT_CRC_HE_CLASSES",
    "Entity",
    "KnowledgeTree",
    "Organ",
    "attribute_sentences",
    "class_prompts",
    "default_tree",
    "expand_query",
    "expansion_texts",
    "load_tree",
    "normalise",
    "write_classes_yaml",
    "zero_shot_classes",
]
