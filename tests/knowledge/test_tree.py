"""Knowledge tree: the packaged YAML, lookup, mentions, prompts, expansion, validation."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest

from histoseek.errors import InputError
from histoseek.evaluation.protocols import load_class_prompts
from histoseek.knowledge import (
    DEFAULT_TEMPLATES,
    EBHI_SEG_CLASSES,
    MIN_ATTRIBUTES,
    NCT_CRC_HE_CLASSES,
    Entity,
    KnowledgeTree,
    attribute_sentences,
    class_prompts,
    default_tree,
    expand_query,
    expansion_texts,
    load_tree,
    write_classes_yaml,
    zero_shot_classes,
)


@pytest.fixture(scope="module")
def tree() -> KnowledgeTree:
    return load_tree()


# ---------------------------------------------------------------- the packaged tree


def test_packaged_tree_is_large_and_complete(tree: KnowledgeTree) -> None:
    assert len(tree) >= 40
    assert len(set(tree.ids)) == len(tree.ids)
    for entity in tree:
        assert entity.name and entity.definition and entity.organ
        assert entity.n_attributes >= MIN_ATTRIBUTES, entity.id
        assert len(attribute_sentences(entity)) >= 5, entity.id
        assert all(s.strip() == s and s for s in attribute_sentences(entity))


def test_ebhi_classes_live_in_the_colorectum(tree: KnowledgeTree) -> None:
    colorectal = {e.id for e in tree.entities_for_organ("colorectum")}
    assert set(EBHI_SEG_CLASSES) <= colorectal
    assert {e.id for e in tree.entities_for_organ("large intestine")} == colorectal
    for label, entity_id in NCT_CRC_HE_CLASSES.items():
        assert tree.get(entity_id) is not None, label


def test_requested_coverage(tree: KnowledgeTree) -> None:
    for key in ["head and neck squamous cell carcinoma", "lung adenocarcinoma", "SCLC",
                "invasive lobular carcinoma", "DCIS", "prostate adenocarcinoma", "ccRCC",
                "hepatocellular carcinoma", "cholangiocarcinoma", "PDAC", "linitis plastica",
                "esophageal adenocarcinoma", "urothelial carcinoma", "melanoma",
                "basal cell carcinoma", "papillary thyroid carcinoma", "glioblastoma",
                "DLBCL", "endometrioid carcinoma", "HGSC", "cervical SCC", "leiomyosarcoma",
                "adipose tissue", "necrosis", "mucus", "debris", "slide background",
                "hyperplastic polyp", "signet-ring cell carcinoma", "carcinoid tumour"]:
        assert tree.get(key) is not None, key
    assert tree.get("HNSCC").tcga_code == ("HNSC",)
    assert set(tree.get("adenocarcinoma").tcga_code) == {"COAD", "READ"}
    assert {e.id for e in tree.for_tcga_code("brca")} >= {"invasive_ductal_carcinoma", "dcis"}


@pytest.mark.shared
def test_tcga_codes_exist_in_the_shared_table(tree: KnowledgeTree, shared_data: Path) -> None:
    table = shared_data / "tcga-patient-cancer-type" / "tcga_patient_to_cancer_type.csv"
    with table.open(newline="") as f:
        known = {row["cancer_type"] for row in csv.DictReader(f)}
    used = {code for e in tree for code in e.tcga_code}
    assert used and used <= known


@pytest.mark.shared
def test_ebhi_labels_resolve(tree: KnowledgeTree, shared_data: Path) -> None:
    with (shared_data / "ebhi-seg" / "labels.csv").open(newline="") as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    assert labels == set(EBHI_SEG_CLASSES)
    assert all(tree.resolve(label).id == label for label in labels)


# ---------------------------------------------------------------- lookup and mentions


def test_lookup_by_synonym_is_case_and_hyphen_insensitive(tree: KnowledgeTree) -> None:
    assert tree.get("High-Grade Dysplasia").id == "high_grade_in"
    assert tree.get("high grade intraepithelial neoplasia").id == "high_grade_in"
    assert tree.get("HIGH_GRADE_IN").id == "high_grade_in"
    assert tree.get("traditional serrated adenoma").id == "serrated_adenoma"
    assert tree.get("no such thing") is None
    assert "tsa" in tree and "unicorn" not in tree
    with pytest.raises(InputError, match="did you mean"):
        tree.resolve("adenocarcinom")
    with pytest.raises(InputError, match="unknown organ"):
        tree.entities_for_organ("spleen-of-mars")


def test_find_mentions_prefers_the_longest_phrase(tree: KnowledgeTree) -> None:
    found = tree.find_mentions("Biopsy: High-grade intraepithelial neoplasia in a tubular adenoma.")
    assert [e.id for e in found] == ["high_grade_in", "low_grade_in"]
    assert [e.id for e in tree.find_mentions("a sessile serrated adenoma")] == [
        "sessile_serrated_lesion"]
    assert [e.id for e in tree.find_mentions("serrated adenoma")] == ["serrated_adenoma"]
    assert [e.id for e in tree.find_mentions("lung adenocarcinoma and adenocarcinoma")] == [
        "lung_adenocarcinoma", "adenocarcinoma"]


def test_find_mentions_needs_whole_words(tree: KnowledgeTree) -> None:
    assert tree.find_mentions("polypoid mucosa, fatty change, idc-like") == [
        tree.get("invasive_ductal_carcinoma")]
    # "normal" alone is too common a word to name normal colorectal mucosa
    assert tree.find_mentions("normal lymph node architecture") == []
    assert [e.id for e in tree.find_mentions("normal colonic mucosa")] == ["normal"]
    assert tree.find_mentions("") == []


# ---------------------------------------------------------------- prompts and sentences


def test_class_prompts_use_name_synonyms_definition_and_attributes(tree: KnowledgeTree) -> None:
    entity = tree.get("serrated_adenoma")
    prompts = class_prompts(entity)
    assert prompts and len(prompts) == len(set(prompts))
    assert all(entity.name in p or any(s in p for s in entity.synonyms) for p in prompts)
    assert f"an H&E image of {entity.name}" in prompts
    assert "an H&E image of traditional serrated adenoma" in prompts
    assert not any(p.endswith(" TSA") for p in prompts)  # abbreviations are skipped
    assert f"{entity.name}: {entity.definition}" in prompts
    for sentence in attribute_sentences(entity):
        assert f"{entity.name}: {sentence}" in prompts
    assert not any(s in " ".join(prompts) for s in entity.attributes["differential"])
    for e in tree:
        assert e.name in class_prompts(e)[0]


def test_class_prompts_reject_bad_templates(tree: KnowledgeTree) -> None:
    entity = tree.get("polyp")
    assert class_prompts(entity, ["{name}"])[0] == entity.name
    for bad in (["{organ} of {name}"], ["no field"]):
        with pytest.raises(InputError, match="template"):
            class_prompts(entity, bad)


def test_attribute_sentences_bare_or_named(tree: KnowledgeTree) -> None:
    entity = tree.get("adenocarcinoma")
    bare = attribute_sentences(entity)
    named = attribute_sentences(entity, with_name=True)
    assert len(bare) == len(named) == entity.n_attributes - len(entity.attributes["differential"])
    assert named[0] == f"{entity.name}: {bare[0]}"
    assert attribute_sentences(entity, kinds=["differential"]) == list(
        entity.attributes["differential"])


# ---------------------------------------------------------------- query expansion


def test_expand_query_adds_the_mentioned_entity(tree: KnowledgeTree) -> None:
    entity = tree.get("signet_ring_cell_carcinoma")
    expanded = expand_query("signet ring cell carcinoma", tree)
    additions = [entity.name, *attribute_sentences(entity)]
    assert expanded == "signet ring cell carcinoma. " + ". ".join(additions) + "."
    assert expand_query(f"{entity.name}.", tree) == (
        f"{entity.name}. " + ". ".join(attribute_sentences(entity)) + ".")
    # a synonym brings the canonical name along
    assert "serrated adenoma" in expand_query("TSA?", tree)


def test_expand_query_leaves_unrelated_text_alone(tree: KnowledgeTree) -> None:
    for text in ["", "a cat on a sofa", "cribriform glands"]:
        assert expand_query(text, tree) == text
    assert expand_query("melanoma", None) == expand_query("melanoma", default_tree())


# ---------------------------------------------------------------- zero-shot classes


def test_zero_shot_classes_and_yaml_round_trip(tree: KnowledgeTree, tmp_path: Path) -> None:
    classes = zero_shot_classes(tree, EBHI_SEG_CLASSES)
    assert list(classes) == list(EBHI_SEG_CLASSES)
    assert classes["polyp"] == class_prompts(tree.get("polyp"), DEFAULT_TEMPLATES)
    path = write_classes_yaml(tmp_path / "out" / "ebhi.yaml", tree, EBHI_SEG_CLASSES)
    loaded = load_class_prompts(path)
    assert loaded.prompts == classes
    nct = load_class_prompts(write_classes_yaml(tmp_path / "nct.yaml", tree, NCT_CRC_HE_CLASSES))
    assert list(nct.prompts) == list(NCT_CRC_HE_CLASSES)
    assert nct.prompts["MUS"][0] == "an H&E image of smooth muscle"


def test_zero_shot_classes_errors(tree: KnowledgeTree) -> None:
    with pytest.raises(InputError, match="no entity"):
        zero_shot_classes(tree, ["adenocarcinoma", "unicorn"])
    with pytest.raises(InputError, match="twice"):
        zero_shot_classes(tree, ["polyp", "polyp"])
    with pytest.raises(InputError, match="no classes"):
        zero_shot_classes(tree, [])


# ---------------------------------------------------------------- validation

GOOD_ENTITY = """\
      - id: {id}
        name: {name}
        definition: A thing.
        attributes:
          architecture: [one, two, three]
          cytology: [four, five]
"""


def write_tree(tmp_path: Path, *entities: str, organ: str = "colorectum") -> Path:
    path = tmp_path / "tree.yaml"
    body = "".join(entities)
    path.write_text(f"organs:\n  - id: {organ}\n    entities:\n{body}", encoding="utf-8")
    return path


def test_small_valid_tree_loads(tmp_path: Path) -> None:
    small = load_tree(write_tree(tmp_path, GOOD_ENTITY.format(id="a_thing", name="a thing")))
    assert small.ids == ["a_thing"] and small.source.endswith("tree.yaml")
    assert isinstance(small.get("A THING"), Entity)
    assert small.get("a_thing").organ == "colorectum"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD_ENTITY.format(id="dup", name="first") + GOOD_ENTITY.format(id="dup", name="second"),
     "duplicate entity id 'dup'"),
    (GOOD_ENTITY.format(id="one", name="same") + GOOD_ENTITY.format(id="two", name="same"),
     "'same' names both 'one' and 'two'"),
    (GOOD_ENTITY.replace("        name: {name}\n", "").format(id="nameless"),
     "'nameless'.*missing 'name'"),
    (GOOD_ENTITY.replace("[four, five]", "[four]").format(id="thin", name="thin"),
     "'thin'.*has 4 attribute sentence"),
    (GOOD_ENTITY.format(id="Bad-Id", name="x"), "must be snake_case"),
    (GOOD_ENTITY.format(id="typo", name="x") + "        synonym: [y]\n", "unknown field"),
    (GOOD_ENTITY.replace("definition: A thing.", "definition: ''").format(id="d", name="d"),
     "missing 'definition'"),
    (GOOD_ENTITY.replace("[one, two, three]", "[one, '', three]").format(id="e", name="e"),
     "non-empty text"),
])
def test_validation_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_tree(write_tree(tmp_path, text))
    assert "tree.yaml" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_tree(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("organs: [unclosed", encoding="utf-8")
    with pytest.raises(InputError, match="cannot read"):
        load_tree(bad)
    bad.write_text(textwrap.dedent("""\
        entities: []
    """), encoding="utf-8")
    with pytest.raises(InputError, match="'organs' list"):
        load_tree(bad)


def test_libyaml_reads_the_tree_as_pure_python_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C parser (fast, used when built in) and the pure-Python fallback agree."""
    import yaml

    fast = load_tree()
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    slow = load_tree()
    assert fast.entities and fast == slow  # entities compare with their attribute sentences


# ---------------------------------------------------------------- subtypes

def test_subtypes_find_their_entity_but_are_not_expanded(tree: KnowledgeTree) -> None:
    polyp = tree.resolve("hamartomatous polyp")
    assert polyp.id == "polyp" and "hamartomatous polyp" in polyp.subtypes
    assert "hamartomatous polyp" in polyp.names
    assert [e.id for e in tree.find_mentions("a Hamartomatous-polyp of the rectum")] == ["polyp"]
    assert tree.expandable_mentions("hamartomatous polyp") == []
    assert expansion_texts("hamartomatous polyp", tree) == []
    assert [e.id for e in tree.expandable_mentions("colorectal polyp")] == ["polyp"]
    mixed = expansion_texts("juvenile polyp beside a signet ring cell carcinoma", tree)
    assert len(mixed) == 1 and mixed[0].startswith("colorectal signet-ring cell carcinoma.")
    # class prompts still name the subtypes: they are kinds of the class
    assert "a histopathology image of hamartomatous polyp" in {
        p.lower() for p in class_prompts(polyp, ("a histopathology image of {name}",))}


def test_subtype_mentions_leave_expansion_weight_to_the_rest(tree: KnowledgeTree) -> None:
    from histoseek.search.text_query import mention_coverage

    assert mention_coverage("hamartomatous polyp", tree) == 0.0
    assert mention_coverage("colorectal polyp", tree) == 1.0


def test_subtypes_must_be_a_list_of_texts_and_unique(tmp_path: Path) -> None:
    entity = GOOD_ENTITY.format(id="a_thing", name="a thing")
    small = load_tree(write_tree(tmp_path, entity + "        subtypes: [a kind of thing]\n"))
    assert small.get("a kind of thing").id == "a_thing"
    with pytest.raises(InputError, match="'subtypes'"):
        load_tree(write_tree(tmp_path, entity + "        subtypes: 7\n"))
    with pytest.raises(InputError, match="names both"):
        load_tree(write_tree(tmp_path, entity + "        subtypes: [x]\n"
                             + GOOD_ENTITY.format(id="other", name="x")))
