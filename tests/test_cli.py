"""The ``histoseek`` command: help for every verb, and index/info/search/remove end to end."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from histoseek.cli import app
from histoseek.encoders.registry import list_encoders

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]
HIT_KEYS = {"score", "kind", "path", "source_id", "slide", "x", "y", "w", "h", "mpp", "label",
            "metadata"}


def run(*args: object, code: int = 0) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: raised {result.exception!r}")
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def flat(text: str) -> str:
    """Whitespace-normalised text, so wrapped help lines compare as one."""
    return " ".join(text.split())


def test_core_commands_exist() -> None:
    assert {"encoders", "index", "search", "info", "remove", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    """sqlite-utils style: each command documents its purpose in ``--help``."""
    command = COMMANDS[name]
    purpose = (command.help or "").strip().splitlines()[0] if command.help else ""
    assert len(purpose) > 10, f"'{name}' has no docstring"
    result = run(name, "--help")
    assert f"{name} [OPTIONS]" in flat(result.output)
    assert flat(purpose) in flat(result.output)
    for param in command.params:
        if param.help:
            assert param.help.split()[0] in result.output, f"{name}: {param.name} undocumented"


def test_top_level_help_lists_every_command() -> None:
    result = run("--help")
    for name in COMMANDS:
        assert name in result.output
    assert "search whole-slide images" in result.output


def test_encoders_lists_offline_ones() -> None:
    output = run("encoders").output
    names = {line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│")}
    assert {"classic", "minilm"} <= names
    assert names - {""} == set(list_encoders())


def test_encoders_json_says_which_need_a_weights_file() -> None:
    rows = {r["name"]: r for r in map(json.loads, run("encoders", "--json").output.splitlines())}
    assert rows["histoseek-base"]["ships_weights"] is True
    assert rows["histoseek-base-v1"]["ships_weights"] is False
    assert rows["histoseek-base-lite2"]["ships_weights"] is False


@pytest.fixture
def indexed(tile_folder: Path, tmp_path: Path) -> Path:
    """``tile_folder`` indexed with a source_id per tile: ``<class>-<i>``."""
    labels = tmp_path / "ids.csv"
    rows = [f"{p.relative_to(tmp_path)},,{p.stem.replace('_', '-')}"
            for p in sorted(tile_folder.rglob("*.png"))]
    labels.write_text("path,label,source_id\n" + "\n".join(rows) + "\n")
    lib = tmp_path / "lib"
    result = run("index", lib, tile_folder, "--labels", labels, "--encoder", "classic")
    assert "12 files added, 0 already indexed, 0 failed; 12 tiles" in result.stdout
    return lib


def info(lib: Path) -> dict:
    return json.loads(run("info", lib, "--json").stdout)


def search(lib: Path, *args: object) -> list[dict]:
    stdout = run("search", lib, *args, "--json").stdout
    lines = [line for line in stdout.splitlines() if line.strip()]
    hits = [json.loads(line) for line in lines]  # one JSON object per line
    assert all(isinstance(h, dict) and set(h) >= HIT_KEYS for h in hits)
    return hits


def test_index_then_info_counts(indexed: Path) -> None:
    data = info(indexed)
    assert (data["sources"], data["tiles"], data["images"], data["slides"]) == (12, 12, 12, 0)
    assert data["labels"] == {"pink": 4, "purple": 4, "pale": 4}
    assert data["encoder"]["name"] == "classic"
    assert data["tiling"]["tile_px"] == 224 and data["tiling"]["target_mpp"] == 0.5
    table = run("info", indexed).output
    assert "sources" in table and "12" in table


def test_second_index_adds_nothing(indexed: Path, tile_folder: Path) -> None:
    result = run("index", indexed, tile_folder)
    assert "0 files added, 12 already indexed, 0 failed" in result.stdout
    assert info(indexed)["tiles"] == 12


def test_search_by_image_json(indexed: Path, tile_folder: Path) -> None:
    query = tile_folder / "purple" / "purple_0.png"
    hits = search(indexed, "--image", query, "-k", "5")
    assert len(hits) == 5
    top = hits[0]
    assert top["path"] == str(query.resolve())
    assert top["score"] == pytest.approx(1.0, abs=1e-4)
    assert (top["kind"], top["label"], top["source_id"], top["slide"]) == (
        "tile", "purple", "purple-0", "purple_0.png")
    assert (top["x"], top["y"], top["w"], top["h"]) == (0, 0, 224, 224)
    assert top["mpp"] is None and top["metadata"] == {}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert [h["label"] for h in hits[:4]] == ["purple"] * 4  # distinct textures cluster


def test_search_exclude_and_where(indexed: Path, tile_folder: Path) -> None:
    query = tile_folder / "pink" / "pink_1.png"
    hits = search(indexed, "--image", query, "-k", "12", "--exclude", "source_id=pink-1")
    assert len(hits) == 11
    assert "pink-1" not in {h["source_id"] for h in hits}
    hits = search(indexed, "--image", query, "-k", "12", "--where", "label=pale")
    assert len(hits) == 4 and {h["label"] for h in hits} == {"pale"}
    hits = search(indexed, "--image", query, "-k", "12", "--where", "label=pale",
                  "--where", "label=purple", "--exclude", "source_id=pale-0")
    assert len(hits) == 7 and {h["label"] for h in hits} == {"pale", "purple"}


def test_search_table_output(indexed: Path, tile_folder: Path) -> None:
    output = run("search", indexed, "--image", tile_folder / "pale" / "pale_2.png",
                 "-k", "3").output
    assert "pale_2.png" in output and "score" in output


def test_remove_then_info(indexed: Path, tile_folder: Path) -> None:
    result = run("remove", indexed, "pink_0.png")
    assert "removed pink_0.png: 1 source(s), 1 tiles" in result.stdout
    data = info(indexed)
    assert (data["sources"], data["tiles"]) == (11, 11)
    assert data["labels"]["pink"] == 3
    hits = search(indexed, "--image", tile_folder / "pink" / "pink_0.png", "-k", "12")
    assert len(hits) == 11 and "pink-0" not in {h["source_id"] for h in hits}
    result = run("index", indexed, tile_folder)  # re-index brings back just that one
    assert "1 files added, 11 already indexed" in result.stdout


def test_index_without_paths_makes_an_empty_library(tmp_path: Path) -> None:
    result = run("index", tmp_path / "empty")
    assert "nothing to add" in flat(result.stdout)
    assert info(tmp_path / "empty")["sources"] == 0
    assert search(tmp_path / "empty", "--image", _tile(tmp_path)) == []


def _tile(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    path = folder / "q.png"
    Image.fromarray(np.full((32, 32, 3), (200, 120, 180), np.uint8)).save(path)
    return path


def test_messages_with_long_paths_stay_on_one_line(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "library"
    result = run("index", deep)
    lines = [line for line in result.output.splitlines() if str(deep) in line]
    assert lines, result.output  # the whole path, unbroken, on one line a user can copy


# --- one search per process: start-up and shut-down costs ----------------------------------
def _fresh_python(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, check=False)


def test_search_imports_only_what_a_search_needs() -> None:
    """The CLI and the Library load no model, ingest or picture libraries: encoders do."""
    heavy = ("torch", "timm", "torchvision", "transformers", "sentence_transformers", "scipy",
             "skimage", "sklearn", "matplotlib", "pandas", "tqdm", "open_clip")
    proc = _fresh_python("import sys, histoseek.cli, histoseek.library; "
                         f"print([m for m in {heavy!r} if m in sys.modules])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_console_script_search_in_a_fresh_process(indexed: Path, tile_folder: Path) -> None:
    """``main`` (GC off for the search, frozen at exit) prints the same hits as in-process."""
    query = tile_folder / "purple" / "purple_0.png"
    proc = _fresh_python("import sys; from histoseek.cli import main; main()", "search",
                         indexed, "--image", query, "-k", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert hits == search(indexed, "--image", query, "-k", "3")


def test_in_process_search_keeps_the_garbage_collector(indexed: Path,
                                                       tile_folder: Path) -> None:
    frozen = gc.get_freeze_count()
    search(indexed, "--image", tile_folder / "pale" / "pale_0.png", "-k", "1")
    assert gc.isenabled() and gc.get_freeze_count() == frozen
