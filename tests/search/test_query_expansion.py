"""Knowledge-based query expansion: a named entity pulls in reports that only describe it.

The library uses the ``classic`` image encoder, so text → report search runs entirely on the
frozen ``minilm`` text encoder and needs no trained model.
"""

from __future__ import annotations

import pytest

from histoseek.knowledge.tree import attribute_sentences, default_tree, expand_query
from histoseek.library import Library

QUERY = "signet ring cell carcinoma"
# Describes signet-ring cell carcinoma by its morphology without ever naming it.
DESCRIBED = ("Colon biopsy: discohesive single tumour cells infiltrate diffusely without forming "
             "glands; many cells hold a large clear mucin vacuole that pushes a crescent-shaped "
             "nucleus to the periphery.")
REPORTS = [
    {"report_id": "described", "text": DESCRIBED},
    {"report_id": "scc", "text": "Larynx biopsy: invasive keratinising squamous cell carcinoma "
                                 "with keratin pearls."},
    {"report_id": "rcc", "text": "Kidney: clear cell renal cell carcinoma, Fuhrman grade 2."},
    {"report_id": "bcc", "text": "Skin excision: nodular basal cell carcinoma, margins clear."},
    {"report_id": "sclc", "text": "Lung biopsy: small cell carcinoma with crush artefact."},
    {"report_id": "normal", "text": "Colon, random biopsies: colonic mucosa within normal "
                                    "limits."},
    {"report_id": "adeno", "text": "Colon biopsy: moderately differentiated adenocarcinoma "
                                   "with cribriform glands."},
    {"report_id": "hcc", "text": "Liver: hepatocellular carcinoma, trabecular pattern."},
]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    lib = Library.create(tmp_path_factory.mktemp("qe") / "lib", encoder="classic")
    report = lib.add_reports(REPORTS)
    assert len(report.added) == len(REPORTS)
    yield lib
    lib.close()


def rank_of(lib: Library, report_id: str, expand: bool) -> int:
    hits = lib.search(text=QUERY, expand=expand, k=len(REPORTS))
    assert len(hits) == len(REPORTS)
    assert all(h.kind == "report" for h in hits)
    return [h.report_id for h in hits].index(report_id)


def test_expansion_lifts_the_report_that_only_describes_the_entity(library: Library) -> None:
    plain = rank_of(library, "described", expand=False)
    expanded = rank_of(library, "described", expand=True)
    assert expanded < plain
    assert expanded == 0


def test_expansion_is_the_default(library: Library) -> None:
    default = [h.report_id for h in library.search(text=QUERY, k=3)]
    expanded = [h.report_id for h in library.search(text=QUERY, k=3, expand=True)]
    assert default == expanded


def test_expand_query_appends_the_entity_and_its_attributes() -> None:
    entity = default_tree().resolve(QUERY)
    expanded = expand_query(QUERY)
    assert expanded.startswith(QUERY)
    assert entity.name in expanded
    for sentence in attribute_sentences(entity):
        assert sentence in expanded


@pytest.mark.parametrize("text", ["a cat sat on the mat", "quarterly revenue report 2024",
                                  "  "])
def test_expand_query_leaves_unrelated_text_unchanged(text: str) -> None:
    assert expand_query(text) == text


def test_unrelated_text_ranks_the_same_with_and_without_expansion(library: Library) -> None:
    # expansion is a no-op for text naming no entity, so both modes rank identically
    text = "specimen received in formalin, labelled with the patient's name"
    with_expansion = [h.report_id for h in library.search(text=text, k=4, expand=True)]
    without = [h.report_id for h in library.search(text=text, k=4, expand=False)]
    assert with_expansion == without
