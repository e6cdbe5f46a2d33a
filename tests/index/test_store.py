"""RecordStore: migrations, all-or-nothing inserts, filters, digests and cascading deletes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from histoseek.errors import InputError, LibraryError
from histoseek.index.migrations import MIGRATIONS, migrate
from histoseek.index.store import RecordStore, ReportRecord, SourceRecord

DIM = 4


def make_record(sha: str, n_tiles: int = 3, label: str | None = None,
                source_id: str | None = None, metadata: dict | None = None,
                n_vectors: int | None = None, seed: int = 0) -> SourceRecord:
    """A source with ``n_tiles`` boxes; ``n_vectors`` != ``n_tiles`` makes a broken record."""
    rng = np.random.default_rng(seed)
    n_vectors = n_tiles if n_vectors is None else n_vectors
    boxes = np.stack([np.arange(n_tiles) * 224, np.zeros(n_tiles), np.full(n_tiles, 224),
                      np.full(n_tiles, 224)], axis=1).astype(np.int64)
    return SourceRecord(
        path=f"/data/{sha}.png", name=f"{sha}.png", sha256=sha, kind="image", width=224,
        height=224, mpp=None, mpp_source="unknown", label=label, source_id=source_id,
        metadata=metadata or {}, boxes_l0=boxes, tile_mpp=None,
        tissue=np.ones(n_tiles, np.float32),
        vectors=rng.standard_normal((n_vectors, DIM)).astype(np.float32),
    )


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    s = RecordStore(tmp_path / "library.sqlite")
    yield s
    s.close()


def _count(store: RecordStore, table: str) -> int:
    return store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_migrations_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "library.sqlite"
    first = RecordStore(path)
    first.set_meta({"format_version": 1})
    first.insert_sources([make_record("a")])
    first.close()
    second = RecordStore(path)  # reopening re-runs migrate(): nothing applied twice
    migrate(second.conn)  # and again on the same connection
    names = [r[0] for r in second.conn.execute("SELECT name FROM _migrations")]
    assert names == [name for name, _ in MIGRATIONS]
    assert second.get_meta("format_version") == 1
    assert second.counts()["tiles"] == 3
    second.close()


def test_not_a_database_raises(tmp_path: Path) -> None:
    path = tmp_path / "library.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match=r"library\.sqlite"):
        RecordStore(path)


def test_insert_returns_tile_ids(store: RecordStore) -> None:
    ids = store.insert_sources([make_record("a", 2), make_record("b", 3)])
    assert [len(i) for i in ids] == [2, 3]
    assert len(set(np.concatenate(ids).tolist())) == 5
    rows = store.tile_rows(np.concatenate(ids).tolist())
    assert {r["name"] for r in rows.values()} == {"a.png", "b.png"}
    n_tiles = dict(store.conn.execute("SELECT sha256, n_tiles FROM sources").fetchall())
    assert n_tiles == {"a": 2, "b": 3}
    assert store.has_sha("a") and not store.has_sha("zzz")


@pytest.mark.parametrize("bad_position", [0, 1, 2])
def test_insert_sources_all_or_nothing(store: RecordStore, bad_position: int) -> None:
    records = [make_record("a"), make_record("b")]
    records.insert(bad_position, make_record("bad", n_tiles=3, n_vectors=2))
    with pytest.raises(ValueError):  # zip(strict=True) fails mid-transaction
        store.insert_sources(records)
    assert _count(store, "sources") == 0
    assert _count(store, "tiles") == 0
    assert not store.conn.in_transaction
    store.insert_sources([make_record("a")])  # the store is still usable afterwards
    assert store.counts()["sources"] == 1


def test_duplicate_sha_rejected(store: RecordStore) -> None:
    store.insert_sources([make_record("a")])
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_sources([make_record("c"), make_record("a", seed=1)])
    assert _count(store, "sources") == 1  # "c" rolled back with the duplicate
    assert _count(store, "tiles") == 3
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_sources([make_record("d"), make_record("d")])
    assert not store.has_sha("d")


@pytest.fixture
def filled(store: RecordStore) -> tuple[RecordStore, dict[str, np.ndarray]]:
    recs = [
        make_record("a", 2, label="tumour", source_id="P1", metadata={"site": "colon", "n": 3}),
        make_record("b", 3, label="normal", source_id="P1", metadata={"site": "lung", "n": 5}),
        make_record("c", 1, label="tumour", source_id="P2", metadata={"site": "colon"}),
        make_record("d", 2, label=None, source_id=None,
                    metadata={"odd-key": "y", "nest": {"deep": 1}}),
    ]
    ids = store.insert_sources(recs)
    return store, dict(zip("abcd", ids, strict=True))


def _ids(*arrays: np.ndarray) -> set[int]:
    return set(np.concatenate(arrays).tolist())


def test_filtered_ids_columns(filled) -> None:
    store, ids = filled
    f = store.filtered_ids
    assert set(f("image", None, None).tolist()) == _ids(*ids.values())
    assert set(f("image", {"label": "tumour"}, None).tolist()) == _ids(ids["a"], ids["c"])
    assert set(f("image", {"label": ["tumour", "normal"]}, None).tolist()) == _ids(
        ids["a"], ids["b"], ids["c"])
    assert set(f("image", {"source_id": "P1"}, None).tolist()) == _ids(ids["a"], ids["b"])
    assert set(f("image", {"slide": "b.png"}, None).tolist()) == _ids(ids["b"])
    # exclude keeps rows whose column is NULL (source "d" has no label, no source_id)
    assert set(f("image", None, {"label": "tumour"}).tolist()) == _ids(ids["b"], ids["d"])
    assert set(f("image", None, {"source_id": "P1"}).tolist()) == _ids(ids["c"], ids["d"])
    assert set(f("image", {"label": "tumour"}, {"source_id": "P2"}).tolist()) == _ids(ids["a"])
    assert len(f("image", {"label": "nothing-like-this"}, None)) == 0


def test_filtered_ids_metadata(filled) -> None:
    store, ids = filled
    f = store.filtered_ids
    assert set(f("image", {"site": "colon"}, None).tolist()) == _ids(ids["a"], ids["c"])
    assert set(f("image", None, {"site": "colon"}).tolist()) == _ids(ids["b"], ids["d"])
    assert set(f("image", {"n": 5}, None).tolist()) == _ids(ids["b"])
    assert set(f("image", {"n": [3, 5]}, {"site": "lung"}).tolist()) == _ids(ids["a"])
    assert set(f("image", {"odd-key": "y"}, None).tolist()) == _ids(ids["d"])
    assert set(f("image", {"nest.deep": 1}, None).tolist()) == _ids(ids["d"])  # a JSON path
    for where, exclude in (({"missing_key": "x"}, None), (None, {"sitee": "colon"})):
        with pytest.raises(InputError, match=r"unknown filter key .*fields that exist: kind, "
                                             r"label, n, name, nest, odd-key"):
            f("image", where, exclude)  # a typo is an error, not "no hits" or "no filter"


@pytest.mark.parametrize("key", ["site'; DROP TABLE tiles; --", "a b", "x[0]", "$", "", "k\"q"])
def test_filtered_ids_odd_key_raises(filled, key: str) -> None:
    store, _ = filled
    with pytest.raises(InputError, match="filter key"):
        store.filtered_ids("image", {key: "x"}, None)
    with pytest.raises(InputError, match="filter key"):
        store.filtered_ids("image", None, {key: "x"})
    assert store.counts()["tiles"] == 8


def test_filtered_ids_reports(store: RecordStore) -> None:
    recs = [ReportRecord("r1", "alpha", source_id="P1", label="tumour", metadata={"site": "x"}),
            ReportRecord("r2", "beta", source_id="P2", label="normal")]
    vecs = {"text": np.eye(2, DIM, dtype=np.float32), "joint": np.eye(2, DIM, dtype=np.float32)}
    new, old = store.upsert_reports(recs, ["s1", "s2"], vecs)
    assert len(old) == 0
    r1, r2 = (int(i) for i in new)
    assert set(store.filtered_ids("text", None, None).tolist()) == {r1, r2}
    assert store.filtered_ids("text", {"label": "tumour"}, None).tolist() == [r1]
    assert store.filtered_ids("joint", None, {"source_id": "P1"}).tolist() == [r2]
    assert store.filtered_ids("text", {"site": "x"}, None).tolist() == [r1]
    assert len(store.filtered_ids("other-space", None, None)) == 0


def test_id_digest(filled) -> None:
    store, ids = filled
    every = np.concatenate(list(ids.values()))
    assert store.id_digest("image") == (len(every), int(every.sum()), int(every.max()))
    np.testing.assert_array_equal(np.sort(store.all_ids("image")), np.sort(every))
    store.delete_sources([store.find_sources("d.png")[0][0]])
    rest = np.concatenate([ids["a"], ids["b"], ids["c"]])
    assert store.id_digest("image") == (len(rest), int(rest.sum()), int(rest.max()))
    assert store.id_digest("text") == (0, 0, 0)


def test_vectors_round_trip(store: RecordStore) -> None:
    rec = make_record("a", 5, seed=7)
    (ids,) = store.insert_sources([rec])
    got = store.vectors_for("image", ids[::-1], DIM)
    np.testing.assert_array_equal(got, rec.vectors[::-1])
    chunks = list(store.iter_vectors("image", DIM, chunk=2))
    assert [len(c[0]) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), rec.vectors)


def test_delete_cascades_to_tiles(filled) -> None:
    store, ids = filled
    (pk, path), = store.find_sources("b.png")
    assert path == "/data/b.png"
    assert store.find_sources("b") == [(pk, path)]  # by sha256
    assert store.find_sources(str(pk)) == [(pk, path)]  # by numeric id
    removed = store.delete_sources([pk])
    assert set(removed.tolist()) == set(ids["b"].tolist())
    left = {r[0] for r in store.conn.execute("SELECT id FROM tiles")}
    assert left == _ids(ids["a"], ids["c"], ids["d"])
    assert not store.tile_rows(ids["b"].tolist())
    assert store.counts()["sources"] == 3 and store.counts()["tiles"] == 5
    orphans = store.conn.execute(
        "SELECT count(*) FROM tiles WHERE source NOT IN (SELECT id FROM sources)").fetchone()[0]
    assert orphans == 0


def test_upsert_replaces_report_and_its_vectors(store: RecordStore) -> None:
    vec = {"text": np.ones((1, DIM), np.float32)}
    (first,), _ = store.upsert_reports([ReportRecord("r1", "old text")], ["s-old"], vec)
    (second,), (old,) = store.upsert_reports([ReportRecord("r1", "new text")], ["s-new"], vec)
    assert old == first and second != first
    assert _count(store, "reports") == 1
    assert _count(store, "report_vectors") == 1
    assert store.report_shas() == {"r1": "s-new"}
    assert store.report_rows([int(second)])[int(second)]["text"] == "new text"


def _joined_places(store: RecordStore, ids: list[int]) -> dict[int, tuple]:
    rows = store.conn.execute("SELECT id, x, y, w, h, mpp, source FROM tiles").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows if r[0] in set(ids)}


@pytest.mark.parametrize("n_wanted", [5, 300])  # the plain-Python path and the numpy one
def test_tile_places_match_sql_before_and_after_a_removal(store: RecordStore,
                                                          n_wanted: int) -> None:
    """Unbroken ids are found by subtraction, broken ones by binary search: both must give
    what a join gives, leave out deleted and unknown ids, and see a removal at once."""
    store.insert_sources([make_record(f"s{i}", 80, seed=i) for i in range(5)])
    all_ids = sorted(r[0] for r in store.conn.execute("SELECT id FROM tiles"))
    rng = np.random.default_rng(0)
    wanted = [int(i) for i in rng.choice(all_ids, n_wanted, replace=False)] + [-5, 10**9]
    places, _ = store.tile_places(wanted)
    assert places == _joined_places(store, wanted)
    (pk, _), = store.find_sources("s2.png")
    store.delete_sources([pk])
    places, _ = store.tile_places(wanted)
    expected = _joined_places(store, wanted)
    assert places == expected and len(expected) < n_wanted
    assert store._tile_table().first_id is None  # the run is broken now
