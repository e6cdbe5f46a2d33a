"""Spell out pathology abbreviations in a query before it is embedded.

Sentence encoders trained on general text place "HGIN" nowhere near "high-grade
intraepithelial neoplasia", so a query typed the way reports are written finds little. The
glossary (``data/abbreviations.yaml``) is matched as whole words and case-sensitively: "NET G1"
is spelled out, "the net effect" is not.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from histoseek.errors import InputError


@lru_cache(maxsize=1)
def glossary() -> dict[str, str]:
    """Abbreviation -> spelled-out term, from the packaged glossary."""
    import yaml

    text = files("histoseek.knowledge").joinpath("data", "abbreviations.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()):
        raise InputError("histoseek/knowledge/data/abbreviations.yaml: expected a mapping of "
                         "abbreviation to spelled-out text")
    return {k.strip(): v.strip() for k, v in data.items()}


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern[str]:
    keys = sorted(glossary(), key=lambda k: (-len(k), k))  # longest first: "SSA/P" before "SSA"
    return re.compile(r"(?<![\w/])(?:" + "|".join(map(re.escape, keys)) + r")(?![\w/])")


def spell_out(text: str) -> str:
    """``text`` with every known abbreviation replaced by its spelled-out term."""
    terms = glossary()
    return _pattern().sub(lambda m: terms[m.group(0)], text)
