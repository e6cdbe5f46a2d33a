"""The Milvus backend (embedded Milvus Lite) against FAISS: same vectors, same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.errors import InputError, LibraryError
from histoseek.index.milvus_index import filter_expression
from histoseek.index.vectors import FaissIndex
from histoseek.library import Library
from synthetic_images import he_like_pixels

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                           strict=True)]))


@pytest.fixture(scope="module")
def milvus_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from histoseek.index.backends import connect_milvus

    client = connect_milvus(str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
    yield client
    client.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_milvus_top_k_matches_exact_faiss(milvus_client, kind: str) -> None:  # type: ignore[no-untyped-def]
    from histoseek.index.milvus_index import MilvusIndex

    data, dim = clustered(4000, 64), 64
    ids = np.arange(100, 4100, dtype=np.int64)
    groups = ids // 100  # 40 "slides" of 100 tiles
    exact = FaissIndex(dim, "flat")
    exact.add(ids, data)
    milvus = MilvusIndex(milvus_client, f"parity_{kind}", dim, kind,
                         group_of=lambda i: i // 100)
    milvus.add(ids, data)
    queries = clustered(50, 64, seed=1)
    _, truth = exact.search(queries, 10)
    scores, found = milvus.search(queries, 10)
    assert recall_at(found, truth) >= 0.99
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first, cosine scale
    # a source filter (what --where label=... becomes) gives FAISS's filtered answer
    keep = np.array([3, 7, 19])
    _, truth = exact.search(queries, 10, allow=ids[np.isin(groups, keep)])
    _, found = milvus.search(queries, 10, allow_groups=keep)
    assert recall_at(found, truth) >= 0.99
    assert set(found.ravel().tolist()) <= set(ids[np.isin(groups, keep)].tolist())
    milvus.remove(ids[:50])
    assert len(milvus) == 3950 and not np.isin(ids[:50], milvus.ids()).any()


def test_filter_expressions() -> None:
    assert filter_expression() == ""
    assert filter_expression(allow_groups=np.array([3, 1, 3])) == "source_id in [1,3]"
    assert filter_expression(deny=np.array([5])) == "id not in [5]"


def _tiles(folder: Path, n: int = 6) -> Path:
    """``n`` tiles in two labelled folders, each tinted its own way so that scores differ."""
    for c, label in enumerate(("tumour", "normal")):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            tint = np.array([1.0, 0.55 + 0.15 * i, 0.6 + 0.3 * c], np.float32)
            pixels = he_like_pixels(224, 224, seed=i + 10 * c) * tint
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / label / f"{i}.png")
    return folder


def _answers(lib: Library, query: Path, **filters: object) -> list[tuple[float, str]]:
    """Hits as (score, file), ties in name order (engines break ties differently; ids
    depend on the order files finish encoding)."""
    return sorted((-round(h.score, 4), str(h.path)) for h in lib.search(image=query, k=5,
                                                                        **filters))


def test_library_on_milvus_answers_like_faiss_and_migrates(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path / "tiles")
    query = tiles / "tumour" / "0.png"
    with Library.create(tmp_path / "faiss-lib", encoder="classic") as lib:
        lib.add(tiles, progress=False)
        expected = _answers(lib, query)
        filtered = _answers_where(lib, query)
    uri = str(tmp_path / "milvus.db")
    with Library.create(tmp_path / "milvus-lib", encoder="classic", vector_store=uri) as lib:
        assert lib.manifest.vector_store["kind"] == "milvus"
        lib.add(tiles, progress=False)
        assert same_ranking(_answers(lib, query), expected)
        assert same_ranking(_answers_where(lib, query), filtered)
        with pytest.raises(InputError, match="unknown filter key"):
            lib.search(image=query, where={"lable": "normal"})
        assert not (tmp_path / "milvus-lib" / "vectors").exists()
    with Library.open(tmp_path / "milvus-lib") as lib:  # reopened: same answers
        assert same_ranking(_answers(lib, query), expected)
        lib.remove(str(tiles / "tumour" / "0.png"))
        assert all(h.path != str(tiles / "tumour" / "0.png")
                   for h in lib.search(image=query, k=10))
        done = lib.migrate("faiss", progress=False)
        assert done.vectors == {"image": 5} and lib.manifest.vector_store_uri == "faiss"
        after = _answers(lib, query)
    with Library.open(tmp_path / "milvus-lib") as lib:
        assert same_ranking(_answers(lib, query), after)
        with pytest.raises(LibraryError, match="already keeps its vectors in faiss"):
            lib.migrate("faiss", progress=False)


def same_ranking(a: list[tuple[float, str]], b: list[tuple[float, str]]) -> bool:
    """Equal scores, and equal ids above the last score (ties there may be cut either way)."""
    if [s for s, _ in a] != [s for s, _ in b]:
        return False
    return {i for s, i in a if s < a[-1][0]} == {i for s, i in b if s < b[-1][0]}


def _answers_where(lib: Library, query: Path) -> list[tuple[float, str]]:
    return _answers(lib, query, where={"label": "normal"})


def test_milvus_library_reconciles_after_a_lost_write(tmp_path: Path) -> None:
    """A crash between SQLite's commit and Milvus's insert: the next open adds what is missing."""
    tiles = _tiles(tmp_path / "tiles")
    with Library.create(tmp_path / "lib", encoder="classic",
                        vector_store=str(tmp_path / "m.db")) as lib:
        lib.add(tiles, progress=False)
        index = lib.indexes["image"]
        index.remove(index.ids()[:2])  # as if the process died before these reached Milvus
    with Library.open(tmp_path / "lib") as lib:
        assert len(lib.indexes["image"]) == 6


def test_unknown_vector_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="unknown vector store 'mongo://x'"):
        Library.create(tmp_path / "lib", encoder="classic", vector_store="mongo://x")
    assert not (tmp_path / "lib").exists()


def test_cli_index_into_milvus_then_migrate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from histoseek.cli import app

    tiles, lib = _tiles(tmp_path / "tiles"), tmp_path / "lib"
    runner = CliRunner()
    made = runner.invoke(app, ["index", str(lib), str(tiles), "--encoder", "classic",
                               "--vector-store", str(tmp_path / "m.db")])
    assert made.exit_code == 0, made.output
    info = runner.invoke(app, ["info", str(lib), "--json"])
    assert str(tmp_path / "m.db") in info.output
    moved = runner.invoke(app, ["migrate", str(lib), "--to", "faiss"])
    assert moved.exit_code == 0, moved.output
    assert "6 image vectors copied" in moved.output and (lib / "vectors" / "image.faiss").is_file()
    again = runner.invoke(app, ["index", str(lib), str(tiles), "--vector-store", "x.db"])
    assert again.exit_code == 2 and "vector_store 'faiss'" in again.output
