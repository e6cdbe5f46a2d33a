"""Load the pathology knowledge tree and turn it into prompts, sentences and query expansions.

The tree (``data/pathology_tree.yaml``) follows KEP (knowledge-enhanced pretraining, 2024):
organs hold entities (diseases or tissue classes), entities hold attribute sentences, each a
short description of something visible on H&E. Three uses:

1. zero-shot classification: :func:`class_prompts` builds several prompts per class from
   the name, synonyms, definition and attributes; :func:`write_classes_yaml` writes them in
   the format :func:`histoseek.evaluation.protocols.load_class_prompts` reads;
2. training guidance: :func:`class_prompts` gives the class-level texts an image embedding
   is pulled towards, :func:`attribute_sentences` the texts a region crop is aligned with;
3. text search: :func:`expansion_texts` gives the name and attributes of every entity a query
   names, embedded separately and fused with the literal query (``histoseek.search.
   text_query``); :func:`expand_query`, which appends them to the query, is kept for the
   record but lets long attribute text outweigh the query.

Only the standard library is imported here; ``yaml`` is imported when a file is read or
written.
"""

from __future__ import annotations

import difflib
import functools
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoseek.errors import InputError

MIN_ATTRIBUTES = 5
"""Fewest attribute sentences (all kinds together) an entity may have."""

COMPARATIVE_KINDS = frozenset({"differential"})
"""Attribute kinds that compare with other entities (and name them); left out of prompts,
region sentences and query expansion unless asked for."""

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "an H&E image of {name}",
    "a histopathology image of {name}",
    "{name}",
    "{name}: {definition}",
    "{name}: {attribute}",
)
"""Prompt templates. Fields: ``{name}`` (the name, and each spelled-out synonym when the
template has no other field), ``{definition}``, ``{attribute}`` (one prompt per sentence)."""

EBHI_SEG_CLASSES: tuple[str, ...] = (
    "adenocarcinoma", "high_grade_in", "low_grade_in", "normal", "polyp", "serrated_adenoma",
)
"""EBHI-Seg class folders; each is an entity id of the packaged tree."""

NCT_CRC_HE_CLASSES: dict[str, str] = {
    "ADI": "adipose_tissue", "BACK": "background", "DEB": "debris", "LYM": "lymphocytes",
    "MUC": "mucus", "MUS": "smooth_muscle", "NORM": "normal", "STR": "stroma",
    "TUM": "adenocarcinoma",
}
"""NCT-CRC-HE-100K label -> entity id, usable as ``ids`` of :func:`zero_shot_classes`."""

_ENTITY_KEYS = frozenset(
    {"id", "name", "synonyms", "subtypes", "definition", "attributes", "tcga_code",
     "mention_id"})
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_SEPARATORS = re.compile(r"[\s_\-]+")
_TEMPLATE_FIELDS = frozenset({"name", "definition", "attribute"})
_PACKAGED = "histoseek/knowledge/data/pathology_tree.yaml"


def normalise(text: str) -> str:
    """Fold case and treat runs of spaces, hyphens and underscores as one space."""
    return _SEPARATORS.sub(" ", text.casefold()).strip()


@dataclass(frozen=True)
class Organ:
    """A tissue or organ grouping entities; ``id`` is snake_case."""

    id: str
    name: str
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    """A disease or tissue class with its attribute sentences.

    ``attributes`` maps a kind (``architecture``, ``cytology``, ``stroma_and_background``,
    ``typical_findings``, ``differential`` …) to its sentences, in file order. ``organ`` is
    the organ id. ``tcga_code`` holds TCGA project codes (empty when none applies; colorectal
    adenocarcinoma has two, ``COAD`` and ``READ``). ``mention_id`` is false when the bare id
    is too common a word (``normal``) to count as a mention in free text. ``subtypes`` are
    narrower kinds, one among several ("hamartomatous polyp" under colorectal polyp): they
    find the entity like synonyms do, but a query naming one is more specific than the
    entity's attribute sentences, so query expansion leaves it alone.
    """

    id: str
    name: str
    organ: str
    synonyms: tuple[str, ...] = ()
    definition: str = ""
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    subtypes: tuple[str, ...] = ()
    tcga_code: tuple[str, ...] = ()
    mention_id: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """The name followed by every synonym and subtype."""
        return (self.name, *self.synonyms, *self.subtypes)

    @property
    def n_attributes(self) -> int:
        """Number of attribute sentences over all kinds."""
        return sum(len(v) for v in self.attributes.values())


@dataclass(frozen=True)
class KnowledgeTree:
    """Entities indexed by id, name and synonym.

    Raises:
        InputError: two entities share an id, or one name/synonym/id (compared after
            :func:`normalise`) points at two entities, or an entity's organ is unknown.
    """

    entities: tuple[Entity, ...]
    organs: tuple[Organ, ...] = ()
    source: str = "<memory>"
    _index: dict[str, Entity] = field(init=False, repr=False, compare=False, hash=False)
    _organ_index: dict[str, Organ] = field(init=False, repr=False, compare=False, hash=False)
    _mentions: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)
    _subtypes: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))
        organs = tuple(self.organs) or tuple(
            Organ(o, o.replace("_", " ")) for o in dict.fromkeys(e.organ for e in self.entities))
        object.__setattr__(self, "organs", organs)
        organ_index: dict[str, Organ] = {}
        for organ in organs:
            for key in {normalise(k) for k in (organ.id, organ.name, *organ.synonyms)}:
                if organ_index.setdefault(key, organ) is not organ:
                    raise InputError(f"{self.source}: organ name '{key}' is used by organs "
                                     f"'{organ_index[key].id}' and '{organ.id}'; rename one")
        seen: dict[str, Entity] = {}
        index: dict[str, Entity] = {}
        phrases: set[str] = set()
        for entity in self.entities:
            if entity.id in seen:
                raise InputError(f"{self.source}: duplicate entity id '{entity.id}'; "
                                 "entity ids must be unique across all organs")
            seen[entity.id] = entity
            if normalise(entity.organ) not in organ_index:
                raise InputError(f"{self.source}: entity '{entity.id}' names unknown organ "
                                 f"'{entity.organ}'; add it to the organs")
            for raw in (entity.id, *entity.names):
                key = normalise(raw)
                other = index.setdefault(key, entity)
                if other is not entity:
                    raise InputError(f"{self.source}: '{raw}' names both '{other.id}' and "
                                     f"'{entity.id}'; make names and synonyms unique")
                if raw != entity.id or entity.mention_id:
                    phrases.add(key)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_organ_index", organ_index)
        object.__setattr__(self, "_mentions", _mention_pattern(phrases))
        object.__setattr__(self, "_subtypes", frozenset(
            normalise(s) for entity in self.entities for s in entity.subtypes))

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and normalise(key) in self._index

    @property
    def ids(self) -> list[str]:
        """Entity ids in file order."""
        return [e.id for e in self.entities]

    def get(self, key: str) -> Entity | None:
        """Entity whose id, name or synonym is ``key`` (case, hyphens, underscores ignored)."""
        return self._index.get(normalise(key))

    def resolve(self, key: str) -> Entity:
        """Like :meth:`get`, but raise :class:`InputError` with close matches when unknown."""
        entity = self.get(key)
        if entity is None:
            close = difflib.get_close_matches(normalise(key), list(self._index), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                "; see KnowledgeTree.ids")
            raise InputError(f"{self.source}: no entity named '{key}'{hint}")
        return entity

    def entities_for_organ(self, organ: str) -> list[Entity]:
        """Entities of an organ given by id, name or synonym (``"colon"`` -> colorectum).

        Raises:
            InputError: the organ is unknown; the message lists the organ ids.
        """
        found = self._organ_index.get(normalise(organ))
        if found is None:
            raise InputError(f"{self.source}: unknown organ '{organ}'; known organs: "
                             f"{', '.join(o.id for o in self.organs)}")
        return [e for e in self.entities if e.organ == found.id]

    def for_tcga_code(self, code: str) -> list[Entity]:
        """Entities carrying a TCGA project code (``"BRCA"`` -> three breast entities)."""
        code = code.strip().upper()
        return [e for e in self.entities if code in e.tcga_code]

    def find_mentions(self, text: str) -> list[Entity]:
        """Entities named in ``text``, in order of first mention, each once.

        A mention is the entity's name, a synonym or its id read with spaces for underscores
        (unless ``mention_id`` is false), as whole words, case-insensitively, with spaces,
        hyphens and underscores interchangeable. Longer phrases win: "high-grade
        intraepithelial neoplasia" is one mention, not also "intraepithelial neoplasia".
        """
        found: dict[str, Entity] = {}
        for entity, _start, _end in self.mention_spans(text):
            found.setdefault(entity.id, entity)
        return list(found.values())

    def expandable_mentions(self, text: str) -> list[Entity]:
        """Like :meth:`find_mentions`, leaving out entities named only by a subtype."""
        found: dict[str, Entity] = {}
        for entity, _start, _end in self.expandable_spans(text):
            found.setdefault(entity.id, entity)
        return list(found.values())

    def expandable_spans(self, text: str) -> list[tuple[Entity, int, int]]:
        """:meth:`mention_spans` without subtype mentions: the spans query expansion
        speaks for (a subtype is narrower than its entity's sentences)."""
        return [(entity, start, end) for entity, start, end in self.mention_spans(text)
                if normalise(text[start:end]) not in self._subtypes]

    def mention_spans(self, text: str) -> list[tuple[Entity, int, int]]:
        """Every mention in ``text`` as ``(entity, start, end)`` character offsets."""
        return [(self._index[normalise(m.group(0))], m.start(), m.end())
                for m in self._mentions.finditer(text)]


def _mention_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    """One alternation of all phrases, longest first, with word boundaries on both ends."""
    alternatives = [r"[\s_\-]+".join(re.escape(token) for token in phrase.split(" "))
                    for phrase in sorted(phrases, key=lambda p: (-len(p), p)) if phrase]
    if not alternatives:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def load_tree(path: str | Path | None = None) -> KnowledgeTree:
    """Read and validate a knowledge tree YAML file (default: the packaged tree).

    Raises:
        InputError: the file cannot be read or parsed, or an organ or entity is malformed
            (missing id, name or definition, fewer than :data:`MIN_ATTRIBUTES` attribute
            sentences, unknown field, duplicate id or name).
    """
    import yaml

    if path is None:
        from importlib.resources import files

        source = _PACKAGED
        reader = files("histoseek.knowledge").joinpath("data", "pathology_tree.yaml").read_text
    else:
        source = str(path)
        reader = Path(path).read_text
    # libyaml's parser when built in: the packaged tree takes ~0.2 s in pure Python, 0.02 s here,
    # on every text search; same safe constructors, so the same data comes back
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(reader(encoding="utf-8"), Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{source}: cannot read the knowledge tree ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("organs"), list):
        raise InputError(f"{source}: expected a mapping with an 'organs' list")
    organs: list[Organ] = []
    entities: list[Entity] = []
    for i, raw_organ in enumerate(data["organs"]):
        if not isinstance(raw_organ, dict):
            raise InputError(f"{source}: organ #{i + 1} is not a mapping")
        organ_id = _snake(raw_organ.get("id"), f"{source}: organ #{i + 1}")
        where = f"{source}: organ '{organ_id}'"
        organs.append(Organ(organ_id, _text(raw_organ.get("name", organ_id.replace("_", " ")),
                                            f"{where}: 'name'"),
                            _texts(raw_organ.get("synonyms", []), f"{where}: 'synonyms'")))
        raw_entities = raw_organ.get("entities")
        if not isinstance(raw_entities, list):
            raise InputError(f"{where}: expected an 'entities' list")
        for j, raw in enumerate(raw_entities):
            entities.append(_parse_entity(raw, organ_id, f"{where}, entity #{j + 1}"))
    return KnowledgeTree(tuple(entities), tuple(organs), source)


@functools.lru_cache(maxsize=1)
def default_tree() -> KnowledgeTree:
    """The packaged tree, loaded once."""
    return load_tree()


def _parse_entity(raw: Any, organ: str, where: str) -> Entity:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping with id, name, definition, attributes")
    entity_id = _snake(raw.get("id"), where)
    where = f"{where} ('{entity_id}')"
    unknown = sorted(set(raw) - _ENTITY_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(_ENTITY_KEYS))}")
    if not raw.get("name"):
        raise InputError(f"{where}: missing 'name'; give every entity a human-readable name")
    if not raw.get("definition"):
        raise InputError(f"{where}: missing 'definition'; add a one-sentence definition")
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict):
        raise InputError(f"{where}: 'attributes' must map kinds (architecture, cytology, ...) "
                         "to lists of sentences")
    parsed = {_snake(kind, f"{where}: attribute kind"): _texts(v, f"{where}: '{kind}'")
              for kind, v in attributes.items()}
    count = sum(len(v) for v in parsed.values())
    if count < MIN_ATTRIBUTES:
        raise InputError(f"{where}: has {count} attribute sentence(s); at least "
                         f"{MIN_ATTRIBUTES} are needed, add more under 'attributes'")
    codes = raw.get("tcga_code") or []
    mention_id = raw.get("mention_id", True)
    if not isinstance(mention_id, bool):
        raise InputError(f"{where}: 'mention_id' must be true or false")
    return Entity(
        id=entity_id, name=_text(raw["name"], f"{where}: 'name'"), organ=organ,
        synonyms=_texts(raw.get("synonyms", []), f"{where}: 'synonyms'"),
        subtypes=_texts(raw.get("subtypes", []), f"{where}: 'subtypes'"),
        definition=_text(raw["definition"], f"{where}: 'definition'"), attributes=parsed,
        tcga_code=tuple(c.upper() for c in _texts(codes, f"{where}: 'tcga_code'")),
        mention_id=mention_id)


def _snake(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SNAKE.match(value):
        raise InputError(f"{where}: id {value!r} must be snake_case (a-z, 0-9, _)")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: expected non-empty text, got {value!r}")
    return " ".join(value.split())


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of texts, got {type(value).__name__}")
    return tuple(_text(v, where) for v in value)


def _is_abbreviation(text: str) -> bool:
    """One token with two or more capitals (``TSA``, ``ccRCC``, ``SSA/P``)."""
    return " " not in text and sum(c.isupper() for c in text) >= 2


def attribute_sentences(entity: Entity, *, kinds: Iterable[str] | None = None,
                        with_name: bool = False) -> list[str]:
    """Attribute sentences of ``entity``, for region-level alignment.

    Sentences are bare by default: a region crop is aligned with what it shows, not with the
    class label, so the label does not leak into region supervision and a feature shared by
    several entities ("desmoplastic stroma ...") keeps one text. ``with_name=True`` gives
    ``"{name}: {sentence}"`` for class-conditioned use.

    Args:
        entity: the entity.
        kinds: attribute kinds to include, in the given order; ``None`` means every kind in
            file order except :data:`COMPARATIVE_KINDS` (``differential`` names other
            entities).
        with_name: prefix each sentence with the entity name.
    """
    if kinds is None:
        kinds = [k for k in entity.attributes if k not in COMPARATIVE_KINDS]
    sentences = [s for kind in kinds for s in entity.attributes.get(kind, ())]
    return [f"{entity.name}: {s}" for s in sentences] if with_name else sentences


def class_prompts(entity: Entity, templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """Knowledge-enhanced prompts for one class (KEP), duplicates removed, order kept.

    A template with ``{attribute}`` gives one prompt per attribute sentence (as
    :func:`attribute_sentences`), one with ``{definition}`` gives one prompt, and one with
    only ``{name}`` gives one per name and spelled-out synonym (abbreviations such as "TSA"
    are skipped: text encoders rarely know them).

    Raises:
        InputError: a template has a field other than name, definition and attribute, or none.
    """
    names = [n for n in entity.names if n == entity.name or not _is_abbreviation(n)]
    sentences = attribute_sentences(entity)
    prompts: dict[str, None] = {}
    for template in templates:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        if not fields or fields - _TEMPLATE_FIELDS:
            raise InputError(f"prompt template {template!r} must use only and at least one of "
                             "{name}, {definition}, {attribute}")
        if "attribute" in fields:
            texts = [template.format(name=entity.name, definition=entity.definition,
                                     attribute=s) for s in sentences]
        elif "definition" in fields:
            texts = [template.format(name=entity.name, definition=entity.definition)]
        else:
            texts = [template.format(name=n) for n in names]
        prompts.update(dict.fromkeys(texts))
    return list(prompts)


def expand_query(text: str, tree: KnowledgeTree | None = None, *,
                 kinds: Iterable[str] | None = None) -> str:
    """The query followed by the name and attribute sentences of every entity it mentions.

    Text search embeds the result, so a query naming an entity, or one of its synonyms, also
    matches tiles and captions described by its attributes. Text that mentions no entity is
    returned unchanged. ``kinds`` is passed to :func:`attribute_sentences`; ``tree`` defaults
    to the packaged tree.
    """
    tree = default_tree() if tree is None else tree
    additions: list[str] = []
    lowered = normalise(text)
    for entity in tree.find_mentions(text):
        if normalise(entity.name) not in lowered:
            additions.append(entity.name)
        additions.extend(attribute_sentences(entity, kinds=kinds))
    if not additions:
        return text
    query = text.rstrip()
    joiner = " " if query.endswith((".", "!", "?", ";")) else ". "
    return query + joiner + ". ".join(additions) + "."


def expansion_texts(text: str, tree: KnowledgeTree | None = None, *,
                    kinds: Iterable[str] | None = None) -> list[str]:
    """One text per entity ``text`` mentions: its name and attribute sentences, without the query.

    For embedding on its own and fusing with the literal query's embedding
    (:func:`histoseek.search.text_query.embed_text_query`) rather than appending to the query
    as :func:`expand_query` does: appended attributes outweigh a short query, so "poorly
    differentiated adenocarcinoma" stops preferring the report that says exactly that.
    Empty when no entity is mentioned. An entity named only by one of its subtypes is left
    out: its sentences describe the broader entity ("hamartomatous polyp" would be pulled
    toward hyperplastic polyps by the generic polyp's).
    """
    tree = default_tree() if tree is None else tree
    return [f"{entity.name}. " + ". ".join(attribute_sentences(entity, kinds=kinds)) + "."
            for entity in tree.expandable_mentions(text)]


def zero_shot_classes(tree: KnowledgeTree, ids: Iterable[str] | Mapping[str, str],
                      templates: Sequence[str] = DEFAULT_TEMPLATES) -> dict[str, list[str]]:
    """Class -> prompts for zero-shot classification.

    Args:
        tree: the knowledge tree.
        ids: entity ids (or names/synonyms), each also the class key; or a mapping from the
            data set's label to an entity (e.g. :data:`NCT_CRC_HE_CLASSES`).
        templates: as :func:`class_prompts`.

    Raises:
        InputError: an entity is unknown or a class key is repeated.
    """
    pairs = list(ids.items()) if isinstance(ids, Mapping) else [(i, i) for i in ids]
    classes: dict[str, list[str]] = {}
    for label, key in pairs:
        if label in classes:
            raise InputError(f"class '{label}' is listed twice; give each class once")
        classes[label] = class_prompts(tree.resolve(key), templates)
    if not classes:
        raise InputError("no classes given; pass entity ids such as EBHI_SEG_CLASSES")
    return classes


def write_classes_yaml(path: str | Path, tree: KnowledgeTree,
                       ids: Iterable[str] | Mapping[str, str],
                       templates: Sequence[str] = DEFAULT_TEMPLATES) -> Path:
    """Write ``{"templates": ["{}"], "classes": {class: [prompt, ...]}}`` and return the path.

    The file is what :func:`histoseek.evaluation.protocols.load_class_prompts` reads; the
    template ``"{}"`` makes it use every prompt as is.
    """
    import yaml

    classes = zero_shot_classes(tree, ids, templates)
    path = Path(path)
    header = f"# Class prompts generated by histoseek.knowledge from {tree.source}\n"
    body = yaml.safe_dump({"templates": ["{}"], "classes": classes}, sort_keys=False,
                          allow_unicode=True, width=1000)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + body, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot write class prompts ({exc}); check the folder") from exc
    return path
