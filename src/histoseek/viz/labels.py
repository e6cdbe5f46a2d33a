"""Class labels as pathologists write them, for pictures and tables."""

from __future__ import annotations

import functools
import re

# Standard shorthand in WHO reporting, so captions fit under a 160 px tile.
_SHORTHAND = (("intraepithelial neoplasia", "IN"),)


@functools.lru_cache(maxsize=256)
def display_label(label: str | None) -> str:
    """``high_grade_in`` -> ``high-grade IN``: the knowledge-base name with WHO shorthand.

    A label the knowledge base does not know keeps its words, underscores made spaces.
    """
    if not label:
        return ""
    from histoseek.knowledge.tree import default_tree

    entity = default_tree().get(label)
    if entity is None:
        return label.replace("_", " ")
    name = entity.name
    for long, short in _SHORTHAND:
        name = re.sub(long, short, name, flags=re.IGNORECASE)
    return name
