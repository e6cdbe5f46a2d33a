"""Slide-level evaluation (``evaluation.slide_eval``): the three measures on fake-encoder
synthetic slides, and the leave-one-source-out rule on chosen hits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from histoseek.evaluation import slide_eval
from histoseek.evaluation.slide_eval import (
    _dominant_source,
    localisation,
    slide_retrieval,
    zero_shot_slides,
)
from histoseek.evaluation.synthetic_slides import SyntheticRegion, SyntheticSlide
from histoseek.library import Library
from histoseek.search.hits import Hit
from slide_library import (
    Built,
    FakeHist,
    built_fixture,  # noqa: F401 (a fixture)
    largest_region_source,
    lib_fixture,  # noqa: F401 (a fixture)
    use_fake_encoder,
)

CLASSES = "adenocarcinoma,normal,polyp"


def in_unit_interval(*values: float) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


# -- on the synthetic library ------------------------------------------------------------------

def test_localisation_on_synthetic_slides(lib: Library, built: Built) -> None:
    result = localisation(lib, built.slides, max_queries=5)
    assert set(result) == {"queries", "hit_rate", "mean_iou", "seconds_per_query"}
    assert result["queries"] == 5
    assert in_unit_interval(result["hit_rate"], result["mean_iou"])
    assert result["seconds_per_query"] >= 0
    # solid-colour regions: every query finds its class elsewhere (other sources hold it)
    assert result["hit_rate"] >= 0.6 and result["mean_iou"] >= 0.5
    everything = localisation(lib, built.slides)
    assert everything["queries"] == sum(len(s.regions) for s in built.slides)


def test_slide_retrieval_leaves_out_the_query_case(lib: Library, built: Built,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[Hit]]] = []
    real = lib.search

    def spy(**kwargs: Any) -> list[Hit]:
        hits = real(**kwargs)
        seen.append((kwargs["exclude"]["source_id"], hits))
        return hits

    monkeypatch.setattr(lib, "search", spy)
    for codes in ("float", "binary"):
        seen.clear()
        result = slide_retrieval(lib, built.slides, k=5, slide_codes=codes)
        assert set(result) == {"queries", "mMV@5", "top1_accuracy", "seconds_per_query"}
        assert result["queries"] == 4
        assert in_unit_interval(result["mMV@5"], result["top1_accuracy"])
        assert [case for case, _ in seen] == [largest_region_source(s) for s in built.slides]
        for (case, hits), slide in zip(seen, built.slides, strict=True):
            assert hits and all(h.kind == "slide" for h in hits)
            assert case not in {h.source_id for h in hits}, slide.slide_id
            assert slide.path not in {Path(h.path) for h in hits}
    # slides 0 and 3 share their case (ade-0): neither finds the other
    assert built.slides[3].path not in {Path(h.path) for h in seen[0][1]}


def test_zero_shot_slides(lib: Library, built: Built) -> None:
    result = zero_shot_slides(lib, built.slides, classes=CLASSES)
    assert result["slides"] == 4
    assert set(result["per_class_accuracy"]) == {"adenocarcinoma", "normal"}  # the truths
    assert in_unit_interval(result["balanced_accuracy"], result["abstention_rate"],
                            result["accuracy_when_not_abstaining"],
                            *result["per_class_accuracy"].values())
    assert result["balanced_accuracy"] == 1.0 and result["abstention_rate"] == 0.0
    json.dumps(result)  # written to --json as is


def test_zero_shot_slides_counts_abstentions(lib: Library, built: Built) -> None:
    result = zero_shot_slides(lib, built.slides, classes=CLASSES, min_margin=2.0)
    assert result["abstention_rate"] == 1.0
    assert result["accuracy_when_not_abstaining"] is None
    # the top class still counts for balanced accuracy
    assert result["balanced_accuracy"] == 1.0
    # top-1 pooling on solid-colour slides: every class present has a perfect tile, so the
    # pooled scores tie closely; the measure still stays a fraction
    top1 = zero_shot_slides(lib, built.slides, classes=CLASSES, top_k=1)
    assert in_unit_interval(top1["balanced_accuracy"], top1["abstention_rate"])


def test_index_synthetic_labels_each_slide_by_dominant_class_and_case(
        built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_encoder(monkeypatch)
    whole = json.loads((built.slides[0].path.parent / "truth.json").read_text())
    picked = [dict(whole["slides"][i], path=str(built.slides[i].path)) for i in (0, 2)]
    truth = tmp_path / "truth.json"  # two of the slides, by absolute path
    truth.write_text(json.dumps({"slides": picked}))
    lib, slides = slide_eval.index_synthetic(truth, tmp_path / "lib", encoder="fake-hist")
    try:
        assert [s.path for s in slides] == [built.slides[i].path for i in (0, 2)]
        rows = {Path(r["path"]): r for r in lib.sources()}
        assert len(rows) == 2
        for slide in slides:
            row = rows[slide.path]
            assert row["label"] == slide.dominant_label
            assert row["source_id"] == largest_region_source(slide)
            assert row["metadata"]["slide_id"] == slide.slide_id
        again, _ = slide_eval.index_synthetic(truth, tmp_path / "lib", encoder="fake-hist")
        again.close()  # resumable: nothing new
    finally:
        lib.close()
    with Library.open(tmp_path / "lib", encoder=FakeHist()) as reopened:
        assert reopened.info()["sources"] == 2
    assert (tmp_path / "lib-labels.csv").is_file()


# -- the leave-one-source-out rule on chosen hits ----------------------------------------------

def region(label: str, source: str, col: int, row: int, cols: int = 2, rows: int = 2
           ) -> SyntheticRegion:
    return SyntheticRegion(label, source, (col * 224, row * 224, cols * 224, rows * 224))


A = SyntheticSlide(Path("/virtual/a.tif"), "a", 2240, 2240, 0.5, "adenocarcinoma",
                   (region("adenocarcinoma", "ade-0", 1, 1, 3, 3),
                    region("normal", "nor-0", 5, 5)))
B = SyntheticSlide(Path("/virtual/b.tif"), "b", 2240, 2240, 0.5, "adenocarcinoma",
                   (region("adenocarcinoma", "ade-0", 1, 1),  # the same source as A's
                    region("adenocarcinoma", "ade-1", 5, 1, 3, 3),  # B's case
                    region("normal", "nor-1", 1, 6)))


def box_hit(slide: SyntheticSlide, box: tuple[int, int, int, int], score: float = 0.9) -> Hit:
    x, y, w, h = box
    return Hit(score, "region", 0, path=str(slide.path), x=x, y=y, w=w, h=h, mpp=0.5)


class Chosen:
    """A stand-in library whose region search returns the hits given."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits, self.calls = hits, []

    def search(self, **kwargs: Any) -> list[Hit]:
        self.calls.append(kwargs)
        return self.hits


def localise(hits: list[Hit]) -> dict[str, Any]:
    """Localisation of A's adenocarcinoma region (source ade-0) among ``hits``, with A and B
    as the truth (the first query is A's first region)."""
    return localisation(Chosen(hits), [A, B], max_queries=1)  # type: ignore[arg-type]


def test_hits_from_the_query_source_only_are_not_found() -> None:
    own = box_hit(A, A.regions[0].box, 1.0)  # the query region itself
    same_case = box_hit(B, B.regions[0].box, 0.95)  # the same source in another slide
    result = localise([own, same_case])
    assert result["queries"] == 1 and result["hit_rate"] == 0.0 and result["mean_iou"] == 0.0


def test_the_first_hit_of_another_source_is_the_one_judged() -> None:
    own, same_case = box_hit(A, A.regions[0].box, 1.0), box_hit(B, B.regions[0].box, 0.95)
    other = box_hit(B, B.regions[1].box, 0.9)  # adenocarcinoma of ade-1: found
    assert localise([own, same_case, other]) == pytest.approx(
        {"queries": 1, "hit_rate": 1.0, "mean_iou": 1.0, "seconds_per_query": 0.0}, abs=0.05)
    x, y, w, h = B.regions[1].box  # two thirds of it: IoU 2/3, still found
    partial = localise([own, box_hit(B, (x, y, w, h * 2 // 3))])
    assert partial["hit_rate"] == 1.0 and partial["mean_iou"] == pytest.approx(2 / 3)
    small = localise([own, box_hit(B, (x, y, w // 3, h // 3))])  # IoU 1/9: not found
    assert small["hit_rate"] == 0.0 and small["mean_iou"] == pytest.approx(1 / 9)


def test_a_wrong_first_hit_is_not_rescued_by_a_later_right_one() -> None:
    wrong = box_hit(B, B.regions[2].box, 0.9)  # normal tissue of another source
    right = box_hit(B, B.regions[1].box, 0.8)
    result = localise([wrong, right])
    assert result["hit_rate"] == 0.0 and result["mean_iou"] == 0.0
    background = box_hit(A, (5 * 224, 1 * 224, 448, 448))  # stroma: no region there
    assert localise([background, right])["hit_rate"] == 0.0


def test_hits_outside_the_truth_are_skipped() -> None:
    stranger = Hit(0.99, "region", 0, path="/virtual/unknown.tif", x=0, y=0, w=448, h=448)
    no_box = Hit(0.98, "slide", 0, path=str(B.path))
    right = box_hit(B, B.regions[1].box, 0.8)
    assert localise([stranger, no_box, right])["hit_rate"] == 1.0


def test_localisation_asks_for_region_hits_of_each_region() -> None:
    chosen = Chosen([])
    result = localisation(chosen, [A, B], k=7)  # type: ignore[arg-type]
    assert result["queries"] == 5 and result["hit_rate"] == 0.0
    assert [c["region"] for c in chosen.calls] == [(s.path, *r.box) for s in (A, B)
                                                   for r in s.regions]
    assert all(c["level"] == "region" and c["k"] == 7 for c in chosen.calls)
    assert localisation(chosen, [A, B], max_queries=2)["queries"] == 2


def test_slide_retrieval_excludes_the_dominant_source_and_votes() -> None:
    chosen = Chosen([Hit(0.9, "slide", 0, path=str(B.path))])
    result = slide_retrieval(chosen, [A, B], k=1)  # type: ignore[arg-type]
    assert [c["exclude"] for c in chosen.calls] == [{"source_id": "ade-0"},
                                                    {"source_id": "ade-1"}]
    assert all(c["target"] == "slides" for c in chosen.calls)
    assert result["mMV@1"] == 1.0 and result["top1_accuracy"] == 1.0


# -- _dominant_source --------------------------------------------------------------------------

def test_dominant_source_is_that_of_the_largest_dominant_class_area() -> None:
    assert _dominant_source(A) == "ade-0"
    slide = SyntheticSlide(Path("/virtual/c.tif"), "c", 2240, 2240, 0.5, "normal", (
        region("adenocarcinoma", "ade-5", 1, 1, 4, 4),  # the largest region, not dominant
        region("normal", "nor-1", 6, 1, 2, 2),
        region("normal", "nor-2", 6, 4, 3, 3),
        region("polyp", "pol-0", 1, 6, 3, 3)))
    assert _dominant_source(slide) == "nor-2"
    swapped = SyntheticSlide(slide.path, "c", 2240, 2240, 0.5, "normal", (
        region("normal", "nor-1", 6, 1, 3, 3), region("normal", "nor-2", 6, 5, 2, 2)))
    assert _dominant_source(swapped) == "nor-1"


def test_dominant_source_of_the_generated_slides(built: Built) -> None:
    for slide in built.slides:
        assert _dominant_source(slide) == largest_region_source(slide)
