"""``histoseek eval``: split, retrieval, zero-shot and cross-modal end to end on made tiles.

Zero-shot and cross-modal need an encoder with an image and a text tower; a tiny fake one
(mean colour in, colour words in, one shared projection) stands in for a real model.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from histoseek.cli import app
from histoseek.encoders.base import Encoder, EncoderInfo, check_texts, check_tiles, l2_normalise
from histoseek.errors import InputError
from histoseek.evaluation import crossmodal
from histoseek.evaluation.crossmodal import evaluate_crossmodal, evaluate_zeroshot
from histoseek.evaluation.datasets import load_dataset
from histoseek.evaluation.protocols import Split

RANKING_COLUMNS = ["encoder", "query_id", "rank", "neighbour_id", "score", "query_label",
                   "neighbour_label"]
PALETTE = {"pink": (225, 140, 190), "purple": (120, 70, 160), "pale": (240, 210, 225)}
CENTRE = np.mean(list(PALETTE.values()), axis=0)
PROJECTION = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 3)))[0]  # orthonormal


class FakeClip(Encoder):
    """Two towers into one 8-d space: an image is its centred mean colour, a text the colour
    its first colour word names; both go through the same orthonormal projection."""

    info = EncoderInfo("fake-clip", "1", 8, ("image", "text"))

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        rgb = check_tiles(tiles).reshape(len(tiles), -1, 3).mean(axis=1)
        return l2_normalise((rgb - CENTRE) @ PROJECTION.T)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in check_texts(texts):
            words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in PALETTE]
            if not words:
                raise ValueError(f"fake text tower knows no colour in {text!r}")
            rows.append(np.array(PALETTE[words[0]], float))
        return l2_normalise((np.array(rows) - CENTRE) @ PROJECTION.T)


@pytest.fixture
def fake_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_encoder`` in the cross-modal module hands out a ``FakeClip`` for that name."""
    real = crossmodal.create_encoder

    def create(name: str, *args: object, **kwargs: object) -> Encoder:
        return FakeClip() if name == "fake-clip" else real(name, *args, **kwargs)

    monkeypatch.setattr(crossmodal, "create_encoder", create)


def run(*args: object, code: int = 0) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: raised {result.exception!r}")
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def source_of(path: Path) -> str:
    """Two sources per class: tiles 0-1 and tiles 2-3."""
    index = int(path.stem.rsplit("_", 1)[1])
    return f"{path.parent.name}-src{index // 2}"


@pytest.fixture
def labelled(tile_folder: Path) -> Path:
    """``tile_folder/labels.csv``: ``path,label,source_id`` with two sources per class."""
    rows = [[str(p.relative_to(tile_folder)), p.parent.name, source_of(p)]
            for p in sorted(tile_folder.rglob("*.png"))]
    with open(tile_folder / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "source_id"], *rows])
    return tile_folder / "labels.csv"


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        assert min(img.size) > 50
        img.load()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def one_error_line(result: object) -> str:
    """The one stderr line of a failed command (tqdm's progress lines aside)."""
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines()
             if line.strip() and not line.startswith("encoding (")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    return lines[0]


# ---------------------------------------------------------------- split + retrieval


def test_split_then_leave_one_source_out_retrieval(labelled: Path, tmp_path: Path) -> None:
    tiles = labelled.parent
    split_path = tmp_path / "split.json"
    result = run("eval", "split", "--data", labelled, "--out", split_path, "--seed", "3")
    assert "train sources" in result.stdout and "test sources" in result.stdout
    split = Split.load(split_path)
    assert split.seed == 3
    assert set(split.train_sources) | set(split.test_sources) == {
        source_of(p) for p in tiles.rglob("*.png")}
    assert not set(split.train_sources) & set(split.test_sources)

    out, cache = tmp_path / "out", tmp_path / "cache"
    result = run("eval", "retrieval", "--data", tiles, "--encoder", "classic",
                 "--exclude-same", "source_id", "--split", split_path, "--subset", "all",
                 "--k", "1,3", "--cache", cache, "--out", out)
    assert "| classic |" in result.stdout
    assert (cache / "embeddings.sqlite").is_file()

    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["classic"]
    m = metrics["classic"]
    for key in ("R@1", "R@3", "P@3", "mMV@3", "mAP@3", "MRR"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["n_queries"] == 12
    assert "leave-one-source-out" in m["protocol"]
    assert m["encoder_version"] == "1"
    assert set(m["ci95"]) == {"R@1", "mMV@1"}  # majority vote at k=5, else the first k
    for key, (low, high) in m["ci95"].items():  # case-bootstrap interval around the figure
        assert low <= m[key] <= high, key

    report = (out / "report.md").read_text()
    assert "95% intervals from a bootstrap over the" in report
    assert report.startswith("# Image retrieval")
    assert "leave-one-source-out" in report
    header = next(line for line in report.splitlines() if line.startswith("| encoder |"))
    assert re.search(r"\| R@1 \| R@3 \| P@1 \| P@3 \|", header), header
    assert "| MRR |" in header
    assert "|---|" in report
    assert re.search(r"^\| classic \| [0-9.]+ \|", report, re.M)

    columns, rows = read_csv(out / "rankings.csv")
    assert columns == RANKING_COLUMNS
    assert rows and {r["encoder"] for r in rows} == {"classic"}
    source = {str(p.relative_to(tiles)): source_of(p) for p in tiles.rglob("*.png")}
    assert {r["query_id"] for r in rows} == set(source)
    for r in rows:
        assert r["query_id"] != r["neighbour_id"]
        assert source[r["query_id"]] != source[r["neighbour_id"]], (
            f"{r['query_id']} was matched with {r['neighbour_id']} of its own source")
        assert r["query_label"] == r["query_id"].split("/")[0]
        assert r["neighbour_label"] == r["neighbour_id"].split("/")[0]
        assert 1 <= int(r["rank"]) <= 3
    # Each query sees the 10 tiles of other sources: k=3 is never padded here.
    assert len(rows) == 12 * 3
    # The rankings and the figures agree: R@1 is the share of rank-1 hits.
    first = [r for r in rows if r["rank"] == "1"]
    r_at_1 = np.mean([r["query_label"] == r["neighbour_label"] for r in first])
    assert m["R@1"] == pytest.approx(r_at_1, abs=1e-4)
    for query in source:
        scores = [float(r["score"]) for r in rows if r["query_id"] == query]
        assert scores == sorted(scores, reverse=True)

    for name in ("per_class.png", "confusion_classic.png", "worst_classic.png"):
        assert_png(out / name)


def test_retrieval_on_a_split_subset(tile_folder: Path, tmp_path: Path) -> None:
    # One source per tile (four per class), so a half split leaves each class two test sources.
    labels = tile_folder / "labels.csv"
    labels.write_text("path,label,source_id\n" + "".join(
        f"{p.relative_to(tile_folder)},{p.parent.name},{p.stem}\n"
        for p in sorted(tile_folder.rglob("*.png"))))
    split_path = tmp_path / "split.json"
    run("eval", "split", "--data", labels, "--out", split_path, "--test-fraction", "0.5")
    _, test = Split.load(split_path).indices(load_dataset(labels))
    out = tmp_path / "out"
    run("eval", "retrieval", "--data", labels, "--encoder", "classic", "--exclude-same",
        "source_id", "--split", split_path, "--subset", "test", "--k", "1",
        "--cache", tmp_path / "cache", "--out", out)
    metrics = json.loads((out / "metrics.json").read_text())["classic"]
    assert metrics["n_queries"] == len(test) == 6
    assert metrics["dataset"].endswith(":test")
    _, rows = read_csv(out / "rankings.csv")
    test_ids = {str(load_dataset(labels).paths[i].relative_to(tile_folder)) for i in test}
    assert {r["query_id"] for r in rows} | {r["neighbour_id"] for r in rows} <= test_ids


def test_no_eligible_relevant_item_fails_cleanly(labelled: Path, tmp_path: Path) -> None:
    """Two sources per class and a half split: each test class has one source, so leaving
    it out leaves nothing relevant; that is a one-line error, not a traceback."""
    split_path = tmp_path / "split.json"
    run("eval", "split", "--data", labelled, "--out", split_path, "--test-fraction", "0.5")
    result = run("eval", "retrieval", "--data", labelled, "--encoder", "classic",
                 "--exclude-same", "source_id", "--split", split_path, "--subset", "test",
                 "--k", "1", "--cache", tmp_path / "cache", "--out", tmp_path / "out", code=2)
    assert "relevant" in one_error_line(result)


def test_image_folder_without_source_ids_says_so(tile_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("eval", "retrieval", "--data", tile_folder, "--encoder", "classic",
        "--exclude-same", "source_id", "--k", "1,3", "--cache", tmp_path / "cache",
        "--out", out)
    protocol = json.loads((out / "metrics.json").read_text())["classic"]["protocol"]
    assert "no source ids" in protocol.lower()
    assert "no source ids" in (out / "report.md").read_text().lower()
    _, rows = read_csv(out / "rankings.csv")
    assert len(rows) == 12 * 3  # only the query itself is excluded


def test_split_without_source_ids_fails_cleanly(tile_folder: Path, tmp_path: Path) -> None:
    result = run("eval", "split", "--data", tile_folder, "--out", tmp_path / "s.json", code=2)
    assert "source ids" in one_error_line(result)
    assert not (tmp_path / "s.json").exists()


def test_exclude_same_unknown_column_fails_cleanly(labelled: Path, tmp_path: Path) -> None:
    result = run("eval", "retrieval", "--data", labelled, "--encoder", "classic",
                 "--exclude-same", "slide", "--cache", tmp_path / "cache",
                 "--out", tmp_path / "out", code=2)
    assert "slide" in one_error_line(result)


# ---------------------------------------------------------------- zero-shot


def write_classes(path: Path) -> Path:
    path.write_text(
        "templates: ['an H&E tile of {}', '{}']\n"
        "classes:\n"
        "  pink: pink eosinophilic stroma\n"
        "  purple: [purple nuclei, dense purple cellular tissue]\n"
        "  pale: [pale loose tissue]\n", encoding="utf-8")
    return path


def test_zeroshot_with_an_image_only_encoder_fails_in_one_line(tile_folder: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("eval", "zeroshot", "--data", tile_folder, "--classes",
                 write_classes(tmp_path / "classes.yaml"), "--encoder", "classic",
                 "--cache", tmp_path / "cache", "--out", out, code=2)
    line = one_error_line(result)
    assert "classic" in line and "text tower" in line
    assert not (out / "metrics.json").exists()


def test_crossmodal_with_an_image_only_encoder_fails_in_one_line(tile_folder: Path,
                                                                 tmp_path: Path) -> None:
    pairs = write_pairs(tile_folder, tmp_path / "pairs.csv")
    result = run("eval", "crossmodal", "--pairs", pairs, "--encoder", "classic",
                 "--cache", tmp_path / "cache", "--out", tmp_path / "out", code=2)
    assert "text tower" in one_error_line(result)


def test_zeroshot_with_a_two_tower_encoder(fake_clip: None, tile_folder: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "zs"
    result = evaluate_zeroshot(tile_folder, write_classes(tmp_path / "classes.yaml"),
                               "fake-clip", out, cache_dir=tmp_path / "cache", progress=False)
    assert result["accuracy"] == 1.0
    assert result["balanced_accuracy"] == 1.0
    assert result["n_queries"] == 12
    assert result["prompts"]["purple"] == [
        "an H&E tile of purple nuclei", "purple nuclei",
        "an H&E tile of dense purple cellular tissue", "dense purple cellular tissue"]

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["fake-clip"]["accuracy"] == 1.0
    columns, rows = read_csv(out / "predictions.csv")
    assert columns == ["path", "label", "predicted"]
    assert len(rows) == 12 and all(r["label"] == r["predicted"] for r in rows)
    assert {Path(r["path"]).parent.name for r in rows} == set(PALETTE)
    report = (out / "report.md").read_text()
    assert "# Zero-shot classification" in report
    assert "pink eosinophilic stroma" in report
    assert "| fake-clip |" in report
    assert_png(out / "confusion_fake-clip.png")
    assert_png(out / "per_class.png")


def test_zeroshot_cli_on_the_test_split(fake_clip: None, labelled: Path,
                                        tmp_path: Path) -> None:
    split_path = tmp_path / "split.json"
    run("eval", "split", "--data", labelled, "--out", split_path, "--test-fraction", "0.5")
    _, test = Split.load(split_path).indices(load_dataset(labelled))
    out = tmp_path / "zs"
    result = run("eval", "zeroshot", "--data", labelled, "--classes",
                 write_classes(tmp_path / "classes.yaml"), "--encoder", "fake-clip",
                 "--split", split_path, "--subset", "test", "--cache", tmp_path / "cache",
                 "--out", out)
    assert "| fake-clip |" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())["fake-clip"]
    assert metrics["n_queries"] == len(test) < 12
    assert metrics["accuracy"] == 1.0
    assert metrics["ci95"]["balanced_accuracy"] == [1.0, 1.0]
    assert "balanced_accuracy [1.000, 1.000]" in (out / "report.md").read_text()


def test_zeroshot_needs_prompts_for_every_class(fake_clip: None, tile_folder: Path,
                                                tmp_path: Path) -> None:
    classes = tmp_path / "two.yaml"
    classes.write_text("classes: {pink: pink, purple: purple}\n", encoding="utf-8")
    with pytest.raises(InputError, match="pale"):
        evaluate_zeroshot(tile_folder, classes, "fake-clip", tmp_path / "out",
                          cache_dir=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------- cross-modal


def write_pairs(tile_folder: Path, path: Path) -> Path:
    texts = {"pink": "a pink stroma tile", "purple": "purple nuclei, crowded",
             "pale": "pale, loose tissue"}
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "text"])
        for p in sorted(tile_folder.rglob("*.png")):
            writer.writerow([str(p.relative_to(path.parent)), texts[p.parent.name]])
    return path


def test_crossmodal_with_a_two_tower_encoder(fake_clip: None, tile_folder: Path,
                                             tmp_path: Path) -> None:
    pairs = write_pairs(tile_folder, tmp_path / "pairs.csv")
    out = tmp_path / "xm"
    result = evaluate_crossmodal(pairs, "fake-clip", out, cache_dir=tmp_path / "cache",
                                 progress=False)
    assert result["i2t_R@1"] == 1.0
    assert result["t2i_R@1"] == 1.0
    assert result["i2t_MedR"] == 1.0
    assert result["n_queries"] == 12
    saved = json.loads((out / "metrics.json").read_text())["fake-clip"]
    assert saved["i2t_R@1"] == 1.0
    columns, rows = read_csv(out / "rankings.csv")
    assert columns == ["image", "rank", "text", "score", "is_pair"]
    assert len(rows) == 12 * 3  # three distinct texts per image
    assert all(r["is_pair"] == "True" for r in rows if r["rank"] == "1")
    assert "# Cross-modal retrieval" in (out / "report.md").read_text()


def test_crossmodal_cli_and_missing_pairs(fake_clip: None, tile_folder: Path,
                                          tmp_path: Path) -> None:
    pairs = write_pairs(tile_folder, tmp_path / "pairs.csv")
    result = run("eval", "crossmodal", "--pairs", pairs, "--encoder", "fake-clip",
                 "--cache", tmp_path / "cache", "--out", tmp_path / "xm")
    assert "| fake-clip |" in result.stdout
    result = run("eval", "crossmodal", "--pairs", tmp_path / "absent.csv", "--encoder",
                 "fake-clip", "--out", tmp_path / "xm2", code=2)
    assert "absent.csv" in one_error_line(result)
