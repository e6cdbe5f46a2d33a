"""Labelled image sets: labels.csv (relative paths, optional source ids, extra columns) and
ImageFolder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from histoseek.errors import InputError
from histoseek.evaluation.datasets import load_dataset


def tile_paths(tile_folder: Path) -> list[Path]:
    return sorted(tile_folder.rglob("*.png"))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_paths_resolve_against_the_csv_folder(
        tile_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = tile_paths(tile_folder)
    rows = [[f"../tiles/{p.parent.name}/{p.name}", p.parent.name, f"src-{i % 5}", f"slide{i}"]
            for i, p in enumerate(files)]
    csv_path = write_csv(tmp_path / "meta" / "labels.csv",
                         ["path", "label", "source_id", "slide"], rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the CSV, never to the working directory

    ds = load_dataset(csv_path)
    assert len(ds) == len(files) == 12
    assert list(ds.paths) == [p.resolve() for p in files]
    assert all(p.is_absolute() and p.is_file() for p in ds.paths)
    assert ds.root == csv_path.parent.resolve()
    assert ds.name == "meta"
    assert ds.labels.tolist() == [p.parent.name for p in files]
    assert ds.classes == ["pale", "pink", "purple"]
    assert ds.source_ids is not None
    assert ds.source_ids.tolist() == [f"src-{i % 5}" for i in range(12)]
    # Extra columns are kept, row-aligned; the known ones are not duplicated there.
    assert set(ds.extra) == {"slide"}
    assert ds.extra["slide"].tolist() == [f"slide{i}" for i in range(12)]
    # A folder holding a labels.csv reads that CSV.
    assert load_dataset(csv_path.parent).paths == ds.paths


def test_csv_without_source_ids(tile_folder: Path) -> None:
    files = tile_paths(tile_folder)
    csv_path = write_csv(tile_folder / "labels.csv", ["path", "label"],
                         [[str(p.relative_to(tile_folder)), p.parent.name] for p in files])
    ds = load_dataset(tile_folder)  # the folder's labels.csv wins over ImageFolder
    assert ds.source_ids is None
    assert ds.extra == {}
    assert len(ds) == 12
    assert load_dataset(csv_path).paths == ds.paths


def test_csv_with_a_blank_source_id_has_none(tile_folder: Path) -> None:
    files = tile_paths(tile_folder)
    rows = [[str(p.relative_to(tile_folder)), p.parent.name, "" if i == 3 else f"s{i}"]
            for i, p in enumerate(files)]
    ds = load_dataset(write_csv(tile_folder / "labels.csv", ["path", "label", "source_id"], rows))
    assert ds.source_ids is None


def test_csv_with_missing_files_names_the_count_and_one(tile_folder: Path) -> None:
    files = tile_paths(tile_folder)
    rows = [[str(p.relative_to(tile_folder)), p.parent.name] for p in files]
    rows += [["pink/gone_1.png", "pink"], ["pale/gone_2.png", "pale"]]
    csv_path = write_csv(tile_folder / "labels.csv", ["path", "label"], rows)
    with pytest.raises(InputError) as info:
        load_dataset(csv_path)
    message = str(info.value)
    assert "2 listed files are missing" in message
    assert "gone_1.png" in message
    assert str(csv_path) in message


@pytest.mark.parametrize(("header", "rows", "needle"), [
    (["file", "label"], [["a.png", "x"]], "path"),
    (["path", "class"], [["a.png", "x"]], "label"),
    (["path", "label"], [], "no rows"),
])
def test_bad_csv_raises(tmp_path: Path, header: list[str], rows: list[list[str]],
                        needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        load_dataset(write_csv(tmp_path / "labels.csv", header, rows))


def test_image_folder(tile_folder: Path) -> None:
    (tile_folder / "pink" / "notes.txt").write_text("not an image")
    (tile_folder / "stray.png").write_bytes(b"")  # files at the top level belong to no class
    ds = load_dataset(tile_folder)
    assert len(ds) == 12
    assert ds.source_ids is None
    assert ds.classes == ["pale", "pink", "purple"]
    assert ds.name == "tiles"
    assert all(p.suffix == ".png" and p.parent.name == label
               for p, label in zip(ds.paths, ds.labels, strict=True))
    assert list(ds.paths) == sorted(ds.paths)


def test_missing_and_empty_data_sets(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such data set"):
        load_dataset(tmp_path / "absent")
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        load_dataset(tmp_path / "empty")


def test_subset_keeps_columns_aligned(tile_folder: Path) -> None:
    files = tile_paths(tile_folder)
    rows = [[str(p.relative_to(tile_folder)), p.parent.name, f"s{i}", f"x{i}"]
            for i, p in enumerate(files)]
    ds = load_dataset(write_csv(tile_folder / "labels.csv",
                                ["path", "label", "source_id", "stain"], rows))
    idx = np.array([7, 0, 11])
    part = ds.subset(idx, "picked")
    assert part.name == "picked"
    assert len(part) == 3
    assert part.paths == (ds.paths[7], ds.paths[0], ds.paths[11])
    assert part.labels.tolist() == ds.labels[idx].tolist()
    assert part.source_ids is not None
    assert part.source_ids.tolist() == ["s7", "s0", "s11"]
    assert part.extra["stain"].tolist() == ["x7", "x0", "x11"]
    assert part.root == ds.root
    assert ds.subset([1, 2]).name == ds.name


def test_subset_without_source_ids(tile_folder: Path) -> None:
    ds = load_dataset(tile_folder)
    part = ds.subset(np.arange(4, 8))
    assert part.source_ids is None
    assert len(part) == 4
    assert part.classes == sorted(set(ds.labels[4:8].tolist()))
