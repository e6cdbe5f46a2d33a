"""Where ``pretrained`` points, weight digests and loader errors, shared by every hub loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from histoseek.encoders.weights_source import (
    interpolation_name,
    load_or_raise,
    local_version,
    parse_pretrained,
    weight_files,
    weights_version,
)
from histoseek.errors import WeightsNotFoundError


def test_parse_pretrained_tells_hub_ids_from_paths(tmp_path: Path) -> None:
    assert parse_pretrained("vinid/plip", "plip", bare_hub_ids=True).kind == "hub"
    hub = parse_pretrained("hf-hub:org/name@v1", "x", bare_hub_ids=False)
    assert (hub.kind, hub.location, hub.revision) == ("hub", "org/name", "v1")
    assert hub.hub_id == "org/name@v1"
    assert parse_pretrained(str(tmp_path), "x", bare_hub_ids=True).kind == "dir"
    assert parse_pretrained(f"local-dir:{tmp_path}", "x", bare_hub_ids=False).kind == "dir"
    with pytest.raises(WeightsNotFoundError):
        parse_pretrained("vinid/plip", "plip", bare_hub_ids=False)
    with pytest.raises(WeightsNotFoundError):
        parse_pretrained("./relative/missing", "plip", bare_hub_ids=True)
    with pytest.raises(WeightsNotFoundError, match="needs weights"):
        parse_pretrained(None, "plip", bare_hub_ids=True)


def test_weight_files_prefer_named_files_then_one_suffix_class(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"b")
    (tmp_path / "a.bin").write_bytes(b"a")
    assert weight_files(tmp_path, ()) == [tmp_path / "a.bin", tmp_path / "b.bin"]  # shards
    (tmp_path / "x.safetensors").write_bytes(b"x")
    assert weight_files(tmp_path, ()) == [tmp_path / "x.safetensors"]
    (tmp_path / "model.pth").write_bytes(b"m")
    assert weight_files(tmp_path, ("model.pth",)) == [tmp_path / "model.pth"]


def test_digest_follows_the_bytes_not_the_path(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"same weights")
    v1 = weights_version(parse_pretrained(str(one), "x", True), ("model.safetensors",), "x")
    v2 = weights_version(parse_pretrained(str(two), "x", True), ("model.safetensors",), "x")
    assert v1 == v2 and v1.startswith("sha256:")
    (two / "model.safetensors").write_bytes(b"other weights")
    assert weights_version(parse_pretrained(str(two), "x", True), (), "x") != v1


def test_folder_without_weights_names_the_folder(tmp_path: Path) -> None:
    source = parse_pretrained(str(tmp_path), "uni", bare_hub_ids=True)
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path)):
        local_version(source, (), "uni")


def test_loader_failures_become_one_line_naming_the_source(tmp_path: Path) -> None:
    source = parse_pretrained(str(tmp_path), "uni", bare_hub_ids=True)

    def broken() -> None:
        raise RuntimeError("Error(s) in loading state_dict\nsize mismatch for ...")

    with pytest.raises(WeightsNotFoundError) as info:
        load_or_raise(broken, source, "uni")
    message = str(info.value)
    assert str(tmp_path) in message and "uni" in message and "\n" not in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert load_or_raise(lambda: 7, source, "uni") == 7


@pytest.mark.parametrize(("value", "expected"), [
    (2, "bilinear"), (3, "bicubic"), ("BILINEAR", "bilinear"), ("lanczos", "bicubic")])
def test_interpolation_names(value: object, expected: str) -> None:
    assert interpolation_name(value) == expected
