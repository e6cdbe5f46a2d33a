"""Zero-shot slide subtyping (``search.classify``, ``Library.classify``, ``histoseek classify``):
top-K pooling, softmax and abstention on hand-made vectors; class resolution; a small
library of synthetic slides with the fake two-tower encoder; the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from histoseek.errors import InputError, NoTextTowerError
from histoseek.library import Library
from histoseek.search.classify import (
    TEMPERATURE,
    classify_tiles,
    resolve_classes,
)
from slide_library import (
    Built,
    built_fixture,  # noqa: F401 (a fixture)
    lib_fixture,  # noqa: F401 (a fixture)
    use_fake_encoder,
)

COLOUR_CLASSES = "adenocarcinoma,normal,polyp"  # knowledge-tree entities FakeHist can "read"


# -- classify_tiles on hand-made vectors -------------------------------------------------------

def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


E = np.eye(4, dtype=np.float32)
CLASSES = {"a": E[0], "b": E[1]}  # class vectors: axes 0 and 1; axes 2-3 are neither


def row_boxes(n: int) -> np.ndarray:
    return np.stack([np.arange(n) * 224, np.full(n, 448), np.full(n, 224), np.full(n, 224)],
                    axis=1).astype(np.int64)


def several_vs_one() -> np.ndarray:
    """Tile 0 is the single best match of any class (b, cos 1.0); tiles 1-4 match a at cos
    0.9, 0.88, 0.86, 0.84; tiles 5-9 match neither."""
    a = [unit(s * E[0] + np.sqrt(1 - s * s) * E[2])[0] for s in (0.9, 0.88, 0.86, 0.84)]
    rest = [unit(E[3] + 0.1 * i * E[2])[0] for i in range(5)]
    return np.stack([E[1], *a, *rest]).astype(np.float32)


def test_several_strong_tiles_beat_one_strongest_tile_when_pooling() -> None:
    vectors = several_vs_one()
    pooled = classify_tiles("s.tif", vectors, row_boxes(10), CLASSES, top_k=5)
    assert pooled.top_class == "a" and pooled.predicted == "a"
    assert pooled.pooled["a"] == pytest.approx((0.9 + 0.88 + 0.86 + 0.84 + 0.0) / 5, abs=1e-5)
    assert pooled.pooled["b"] == pytest.approx((1.0 + 0 + 0 + 0 + 0) / 5, abs=1e-5)
    # top-1 pooling is max pooling: the single strongest tile wins
    maxed = classify_tiles("s.tif", vectors, row_boxes(10), CLASSES, top_k=1)
    assert maxed.top_class == "b"
    assert maxed.pooled == pytest.approx({"b": 1.0, "a": 0.9}, abs=1e-5)


def test_probabilities_are_a_softmax_sorted_best_first() -> None:
    classes = {"a": E[0], "b": E[1], "c": unit(E[0] + E[1])[0]}
    vectors = unit(np.array([[1, 0.2, 0, 0], [0.3, 1, 0.1, 0], [0.5, 0.5, 1, 0],
                             [0, 0, 0, 1]]))
    result = classify_tiles("s.tif", vectors, row_boxes(4), classes, top_k=2, min_margin=0)
    probs = list(result.probabilities.values())
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    assert probs == sorted(probs, reverse=True)
    assert list(result.pooled) == list(result.probabilities)  # same class order
    sims = vectors @ np.stack(list(classes.values())).T
    pooled = np.sort(sims, axis=0)[-2:].mean(axis=0)
    expected = np.exp((pooled - pooled.max()) / TEMPERATURE)
    expected /= expected.sum()
    for i, name in enumerate(classes):
        assert result.pooled[name] == pytest.approx(pooled[i], abs=1e-5)
        assert result.probabilities[name] == pytest.approx(expected[i], rel=1e-4, abs=1e-9)
    assert result.margin == pytest.approx(probs[0] - probs[1], abs=1e-7)
    assert result.n_tiles == 4


def test_abstains_exactly_when_the_margin_is_below_min_margin() -> None:
    # a and b nearly tied: pooled 0.70 and 0.69, so the softmax lead is small but not nil
    vectors = unit(np.array([[0.70, 0.69, np.sqrt(1 - 0.70**2 - 0.69**2), 0]]))
    free = classify_tiles("s.tif", vectors, row_boxes(1), CLASSES, min_margin=0.0)
    margin = free.margin
    assert 0.05 < margin < 0.9 and free.top_class == "a"
    at = classify_tiles("s.tif", vectors, row_boxes(1), CLASSES, min_margin=margin)
    assert not at.abstained and at.predicted == "a" and at.margin == margin
    above = classify_tiles("s.tif", vectors, row_boxes(1), CLASSES,
                           min_margin=float(np.nextafter(margin, 1.0)))
    assert above.abstained and above.predicted is None
    assert above.top_class == "a"  # the best guess is still reported
    data = above.to_dict()
    assert data["predicted"] is None and data["abstained"] is True and data["top_class"] == "a"


def test_driving_tiles_are_the_top_tiles_of_the_top_class_with_their_boxes() -> None:
    vectors = several_vs_one()
    boxes = row_boxes(10)
    ids = np.arange(100, 110)
    result = classify_tiles("s.tif", vectors, boxes, CLASSES, top_k=5, tile_ids=ids,
                            n_driving=3)
    assert result.top_class == "a"
    assert [t.box for t in result.driving_tiles] == [tuple(boxes[i]) for i in (1, 2, 3)]
    assert [t.tile_id for t in result.driving_tiles] == [101, 102, 103]
    assert [t.score for t in result.driving_tiles] == pytest.approx([0.9, 0.88, 0.86], abs=1e-5)
    assert all(isinstance(v, int) for t in result.driving_tiles for v in t.box)
    # every tile's similarity to the top class, for the heatmap
    assert result.tile_scores == pytest.approx(vectors @ E[0], abs=1e-6)
    assert np.array_equal(result.tile_boxes, boxes)
    # without ids, the driving tiles still carry their boxes
    plain = classify_tiles("s.tif", vectors, boxes, CLASSES, top_k=1)
    assert plain.top_class == "b" and plain.driving_tiles[0].box == tuple(boxes[0])
    assert plain.driving_tiles[0].tile_id is None and len(plain.driving_tiles) == 5


def test_a_slide_without_tiles_is_refused() -> None:
    with pytest.raises(InputError, match=r"empty\.tif: no tissue tiles"):
        classify_tiles("empty.tif", np.zeros((0, 4), np.float32),
                       np.zeros((0, 4), np.int64), CLASSES)


def test_top_k_larger_than_the_tile_count_pools_every_tile() -> None:
    vectors = unit(np.array([[1, 0.5, 0, 0], [0.2, 1, 0, 0], [0, 0, 1, 0]]))
    result = classify_tiles("s.tif", vectors, row_boxes(3), CLASSES, top_k=50)
    means = (vectors @ np.stack([E[0], E[1]]).T).mean(axis=0)
    assert result.pooled["a"] == pytest.approx(means[0], abs=1e-6)
    assert result.pooled["b"] == pytest.approx(means[1], abs=1e-6)
    assert result.n_tiles == 3 and len(result.driving_tiles) == 3


def test_tuple_classes_keep_their_names() -> None:
    vectors = several_vs_one()
    as_tuple = classify_tiles("s.tif", vectors, row_boxes(10), (["x", "y"], np.stack(
        [E[0], E[1]])), top_k=5)
    assert as_tuple.top_class == "x" and set(as_tuple.probabilities) == {"x", "y"}


def test_top_k_below_one_is_refused() -> None:
    with pytest.raises(InputError, match="top_k"):
        classify_tiles("s.tif", several_vs_one(), row_boxes(10), CLASSES, top_k=0)


# -- resolve_classes ---------------------------------------------------------------------------

def test_comma_names_resolve_through_the_knowledge_tree() -> None:
    prompts = resolve_classes(" adenocarcinoma, normal ,polyp,", ["serrated_adenoma"])
    assert list(prompts) == ["adenocarcinoma", "normal", "polyp"]
    assert all(len(texts) > 3 for texts in prompts.values())
    assert any("adenocarcinoma" in t for t in prompts["adenocarcinoma"])
    assert any("polyp" in t for t in prompts["polyp"])
    assert resolve_classes(["normal", "polyp"], []) == {k: prompts[k] for k in ("normal", "polyp")}


def test_the_default_classes_are_used_when_none_are_given() -> None:
    prompts = resolve_classes(None, ["normal", "polyp"])
    assert list(prompts) == ["normal", "polyp"]


def test_a_prompts_file_gives_the_classes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text("templates: ['{}', 'an image of {}']\n"
                    "classes:\n  red: [red tissue]\n  blue: [blue tissue, navy cells]\n")
    for given in (path, str(path)):
        prompts = resolve_classes(given, ["normal"])
        assert prompts == {"red": ["red tissue", "an image of red tissue"],
                           "blue": ["blue tissue", "an image of blue tissue", "navy cells",
                                    "an image of navy cells"]}


def test_a_missing_prompts_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match=r"nope\.yaml: no such class prompts file"):
        resolve_classes(str(missing), [])
    with pytest.raises(InputError, match=r"nope\.yaml"):
        resolve_classes(missing, [])


@pytest.mark.parametrize("given", ["normal", "normal,", ["polyp"]])
def test_a_single_class_is_refused(given: object) -> None:
    with pytest.raises(InputError, match="at least two classes"):
        resolve_classes(given, [])  # type: ignore[arg-type]


def test_a_prompts_file_with_a_single_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text("classes:\n  normal: [normal mucosa]\n")
    with pytest.raises(InputError, match="at least two classes"):
        resolve_classes(path, [])


def test_an_unknown_class_name_is_refused() -> None:
    with pytest.raises(InputError, match="flurbosis"):
        resolve_classes("normal,flurbosis", [])


# -- Library.classify on synthetic slides ------------------------------------------------------

def inside(box: tuple[int, int, int, int], region: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    rx, ry, rw, rh = region
    return rx <= x and ry <= y and x + w <= rx + rw and y + h <= ry + rh


def test_an_indexed_slide_is_classified_from_its_stored_vectors(
        lib: Library, built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_images(tiles: np.ndarray) -> np.ndarray:
        raise AssertionError("an indexed slide must not be encoded again")

    monkeypatch.setattr(lib.encoder, "encode_images", no_images)
    for slide in built.slides:
        result = lib.classify(slide.path, classes=COLOUR_CLASSES, progress=False)
        assert result.top_class == slide.dominant_label == result.predicted, slide.slide_id
        assert set(result.probabilities) == {"adenocarcinoma", "normal", "polyp"}
        own = lib.store.source_by_path(slide.path)
        ids, boxes = lib.store.source_tiles(own)
        assert result.n_tiles == len(ids) and result.mpp == pytest.approx(0.5)
        assert {t.tile_id for t in result.driving_tiles} <= set(ids.tolist())
        assert len(result.driving_tiles) == 5
        # the driving tiles lie in the slide's regions of the class they drove
        for tile in result.driving_tiles:
            assert any(inside(tile.box, r.box) for r in slide.regions
                       if r.label == slide.dominant_label), (slide.slide_id, tile)
        assert np.array_equal(np.asarray(result.tile_boxes), boxes)


def test_class_vectors_are_embedded_once_per_prompts(
        lib: Library, built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = lib.encoder.encode_texts
    monkeypatch.setattr(lib.encoder, "encode_texts", lambda texts: calls.append(1) or real(texts))
    for slide in built.slides:
        lib.classify(slide.path, classes=COLOUR_CLASSES, progress=False)
    assert len(calls) == 3  # one batch of prompts per class, for the first slide only
    lib.classify(built.slides[0].path, classes="normal,polyp", progress=False)
    assert len(calls) == 5  # other prompts: embedded anew


def test_an_unindexed_copy_is_tiled_and_encoded_to_the_same_answer(
        lib: Library, built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slide = built.slides[2]  # the "normal" one
    copy = Path(shutil.copy(slide.path, tmp_path / "copy.tif"))
    encoded = []
    real = lib.encoder.encode_images
    monkeypatch.setattr(lib.encoder, "encode_images",
                        lambda tiles: encoded.append(len(tiles)) or real(tiles))
    stored = lib.classify(slide.path, classes=COLOUR_CLASSES, progress=False)
    assert encoded == []
    fresh = lib.classify(copy, classes=COLOUR_CLASSES, progress=False)
    assert sum(encoded) == fresh.n_tiles == stored.n_tiles
    assert fresh.top_class == stored.top_class == "normal"
    assert fresh.path == str(copy)
    assert fresh.pooled == pytest.approx(stored.pooled, abs=1e-5)  # same pixels, same tiles
    assert [t.box for t in fresh.driving_tiles] == [t.box for t in stored.driving_tiles]
    assert all(t.tile_id is None for t in fresh.driving_tiles)


def test_a_plain_image_is_classified_too(lib: Library, built: Built, tmp_path: Path) -> None:
    tile = built.tiles / "polyp" / "src0_00.png"
    big = tmp_path / "polyp.png"  # two by two tiles of polyp
    pixels = np.asarray(Image.open(tile))
    Image.fromarray(np.tile(pixels, (2, 2, 1))).save(big)
    result = lib.classify(big, classes=COLOUR_CLASSES, mpp=0.5, progress=False)
    assert result.top_class == "polyp" and result.n_tiles == 4


def test_to_dict_round_trips_through_json(lib: Library, built: Built) -> None:
    result = lib.classify(built.slides[0].path, classes=COLOUR_CLASSES, progress=False)
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["predicted"] == "adenocarcinoma" and data["abstained"] is False
    assert list(data["probabilities"]) == list(result.probabilities)
    assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    first = data["driving_tiles"][0]
    assert set(first) == {"x", "y", "w", "h", "score", "tile_id"}
    assert (first["x"], first["y"], first["w"], first["h"]) == result.driving_tiles[0].box
    assert data["n_tiles"] == result.n_tiles and data["path"] == str(built.slides[0].path)


def test_an_encoder_without_a_text_tower_cannot_classify(tmp_path: Path) -> None:
    with Library.create(tmp_path / "lib", encoder="classic") as library, pytest.raises(
            NoTextTowerError):
        library.classify(tmp_path / "anything.tif", classes=COLOUR_CLASSES)


# -- histoseek classify -----------------------------------------------------------------------

def invoke(*args: object):  # type: ignore[no-untyped-def]
    from histoseek.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_cli_classify_json_from_a_library(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_encoder(monkeypatch)
    result = invoke("classify", built.slides[2].path, built.slides[0].path, "--library",
                    built.lib, "--classes", COLOUR_CLASSES, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    for data, slide in zip(lines, (built.slides[2], built.slides[0]), strict=True):
        assert data["path"] == str(slide.path)
        assert data["predicted"] == slide.dominant_label and data["abstained"] is False
        assert set(data["probabilities"]) == {"adenocarcinoma", "normal", "polyp"}
        assert len(data["driving_tiles"]) == 5


def test_cli_classify_top_k_and_min_margin(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_encoder(monkeypatch)
    result = invoke("classify", built.slides[2].path, "--library", built.lib, "--classes",
                    COLOUR_CLASSES, "--top-k", "1", "--min-margin", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["abstained"] is True and data["predicted"] is None  # no margin reaches 2
    assert data["min_margin"] == 2.0 and data["top_class"] in data["probabilities"]
    # top-1 pooling: the top class's pooled similarity is its single best tile's
    assert data["pooled_similarity"][data["top_class"]] == pytest.approx(
        data["driving_tiles"][0]["score"], abs=1e-3)
    pooled_10 = json.loads(invoke("classify", built.slides[2].path, "--library", built.lib,
                                  "--classes", COLOUR_CLASSES, "--json").stdout)
    assert pooled_10["pooled_similarity"]["adenocarcinoma"] < data["pooled_similarity"][
        "adenocarcinoma"] - 0.05  # ten tiles pooled: lower than the best one alone


def test_cli_classify_without_a_library_uses_the_named_encoder(
        built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_encoder(monkeypatch)
    result = invoke("classify", built.slides[2].path, "--encoder", "fake-hist", "--classes",
                    COLOUR_CLASSES)
    assert result.exit_code == 0, result.output
    assert "normal" in result.stdout and "tiles that drove 'normal'" in result.stdout


def test_cli_classify_writes_heatmaps(built: Built, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    use_fake_encoder(monkeypatch)
    out = tmp_path / "maps"
    result = invoke("classify", built.slides[0].path, "--library", built.lib, "--classes",
                    COLOUR_CLASSES, "--heatmaps", out)
    assert result.exit_code == 0, result.output
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == [f"classify-{built.slides[0].path.stem}.png"]
    assert f"heatmap: {written[0]}" in result.stderr
    with Image.open(written[0]) as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_cli_classify_names_a_missing_slide_and_goes_on(
        built: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_encoder(monkeypatch)
    missing = tmp_path / "no-such-slide.tif"
    result = invoke("classify", missing, built.slides[2].path, "--library", built.lib,
                    "--classes", COLOUR_CLASSES, "--json")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "no-such-slide.tif" in line]
    assert len(errors) == 1 and errors[0].startswith("error:"), result.stderr
    # the other slide is still classified
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [d["predicted"] for d in lines] == ["normal"]
