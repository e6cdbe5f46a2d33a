"""Library end to end: create/open, add, re-add, search of every kind, remove, crash recovery."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess, check_texts, check_tiles
from histoseek.encoders.registry import create_encoder as real_create_encoder
from histoseek.errors import EmptyQueryError, InputError, LibraryError, NoTextTowerError
from histoseek.library import Library
from histoseek.slides.tiling import TilingConfig

PALETTES = {"pink": (225, 140, 190), "purple": (120, 70, 160), "pale": (240, 210, 225)}
_CACHE: dict[str, Encoder] = {}


class FakeClip(Encoder):
    """A tiny two-tower encoder: images by mean colour, texts by colour words plus hashing.

    Both towers land in one 16-d space through the same fixed orthonormal projection, so a
    colour word and a tile of that colour meet; other words add small hash-seeded noise.
    """

    def __init__(self) -> None:
        q, _ = np.linalg.qr(np.random.default_rng(42).standard_normal((16, 3)))
        self.proj = q.T.astype(np.float32)  # [3, 16], orthonormal rows
        self.info = EncoderInfo("fake-clip", "1", 16, ("image", "text"), Preprocess())

    def _colour(self, rgb: np.ndarray) -> np.ndarray:
        return ((np.asarray(rgb, np.float32) - 128.0) / 128.0) @ self.proj

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        tiles = check_tiles(tiles)
        vecs = self._colour(tiles.reshape(len(tiles), -1, 3).mean(axis=1))
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in check_texts(texts):
            vec = np.zeros(16, np.float32)
            for word in text.lower().split():
                if word in PALETTES:
                    vec += self._colour(PALETTES[word])
                else:
                    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                    vec += 0.05 * np.random.default_rng(seed).standard_normal(16)
            out.append(vec / np.linalg.norm(vec))
        return np.stack(out).astype(np.float32)


def _minilm() -> Encoder:
    """The real text encoder, loaded once per session (it takes seconds)."""
    if "minilm" not in _CACHE:
        _CACHE["minilm"] = real_create_encoder("minilm")
    return _CACHE["minilm"]


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    library = Library.create(tmp_path / "lib", encoder="classic", text_encoder=_minilm())
    yield library
    library.store.close()


def _tiles(tile_folder: Path) -> list[Path]:
    return sorted(tile_folder.rglob("*.png"))


def _search_all(library: Library, query: Any, **kw: Any) -> list:
    """Every tile of the library ranked against ``query`` (k = tile count)."""
    return library.search(image=query, k=library.info()["tiles"] + 5, **kw)


def _assert_index_matches_store(library: Library) -> None:
    ids = library.indexes["image"].ids()
    assert len(ids) == len(set(ids.tolist()))
    assert set(ids.tolist()) == set(library.store.all_ids("image").tolist())


# -- lifecycle ---------------------------------------------------------------------------------
def test_create_open_round_trip(tmp_path: Path) -> None:
    tiling = TilingConfig(target_mpp=1.0, tile_px=128, min_tissue=0.3)
    with Library.create(tmp_path / "lib", index="hnsw", tiling=tiling,
                        encoder="classic") as created:
        manifest = created.manifest
    with Library.open(tmp_path / "lib") as opened:
        assert opened.manifest == manifest
        assert opened.tiling == tiling
        assert opened.manifest.index == "hnsw"
        assert opened.encoder.name == "classic"
    with Library.open_or_create(tmp_path / "lib", encoder="classic") as again:
        assert again.manifest == manifest


def test_create_refuses_existing_and_open_refuses_missing(tmp_path: Path) -> None:
    Library.create(tmp_path / "lib", encoder="classic").close()
    with pytest.raises(LibraryError, match="exists"):
        Library.create(tmp_path / "lib", encoder="classic")
    with pytest.raises(LibraryError, match="no histoseek library"):
        Library.open(tmp_path / "nothing")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LibraryError, match="not a folder"):
        Library.create(tmp_path / "afile", encoder="classic")
    with pytest.raises(LibraryError, match="unknown index"):
        Library.create(tmp_path / "lib2", index="annoy", encoder="classic")  # type: ignore[arg-type]
    assert not (tmp_path / "lib2" / "library.sqlite").exists()


# -- adding ------------------------------------------------------------------------------------
def test_add_tile_folder_labels_and_readd_noop(lib: Library, tile_folder: Path) -> None:
    report = lib.add(tile_folder, progress=False)
    files = _tiles(tile_folder)
    assert len(report.added) == len(files) == 12 and not report.failures
    assert report.tiles == 12
    info = lib.info()
    assert (info["sources"], info["images"], info["slides"], info["tiles"]) == (12, 12, 0, 12)
    assert info["labels"] == {"pink": 4, "purple": 4, "pale": 4}
    before = set(lib.store.all_ids("image").tolist())
    again = lib.add(tile_folder, progress=False)
    assert again.added == [] and again.tiles == 0
    assert sorted(again.unchanged) == sorted(str(f.resolve()) for f in files)
    assert lib.info()["tiles"] == 12 and len(lib.indexes["image"]) == 12
    assert set(lib.store.all_ids("image").tolist()) == before


def test_other_files_in_folders_are_reported_not_dropped(lib: Library,
                                                         tile_folder: Path) -> None:
    (tile_folder / "labels.csv").write_text("path,label\n")
    (tile_folder / "pink" / "notes.pdf").write_bytes(b"%PDF-1.4")
    (tile_folder / "pink" / ".DS_Store").write_bytes(b"\0")  # hidden files stay quiet
    report = lib.add(tile_folder, progress=False)
    assert len(report.added) == 12 and not report.failures
    assert report.skipped == ["labels.csv", "notes.pdf"]
    assert "2 skipped (not a slide or image format: labels.csv, notes.pdf)" in report.summary()


def test_add_same_bytes_twice_indexes_once(lib: Library, tile_folder: Path) -> None:
    original = tile_folder / "pink" / "pink_0.png"
    shutil.copy(original, tile_folder / "pink" / "pink_0_copy.png")  # same run, same bytes
    report = lib.add(tile_folder, progress=False)
    assert len(report.added) == 12 and len(report.unchanged) == 1 and not report.failures
    shutil.copy(original, tile_folder.parent / "elsewhere.png")  # a later run, another path
    assert lib.add([tile_folder.parent / "elsewhere.png"], progress=False).added == []
    assert lib.info()["sources"] == lib.info()["tiles"] == 12
    _assert_index_matches_store(lib)


def test_add_pyramid_slide(lib: Library, pyramid_tiff: Path) -> None:
    report = lib.add([pyramid_tiff], progress=False)
    assert report.added == [str(pyramid_tiff)] and report.tiles > 1
    info = lib.info()
    assert (info["slides"], info["images"], info["tiles"]) == (1, 0, report.tiles)
    rows = lib.store.tile_rows(lib.store.all_ids("image").tolist()).values()
    for row in rows:
        assert row["kind"] == "slide" and row["mpp"] == pytest.approx(0.5)
        assert row["w"] == row["h"] == 448  # 224 px at 0.5 mpp on a 0.25 mpp slide
        assert row["x"] >= 0 and row["x"] + row["w"] <= 2048
        assert row["y"] >= 0 and row["y"] + row["h"] <= 1536


def test_add_labels_csv_with_source_ids(lib: Library, tile_folder: Path) -> None:
    csv = tile_folder / "labels.csv"
    csv.write_text("path,label,source_id,site\n"
                   "pink/pink_0.png,tumour,P1,colon\n"
                   "pink/pink_1.png,,P1,colon\n"
                   f"{(tile_folder / 'pale' / 'pale_0.png').resolve()},normal,P2,lung\n")
    lib.add(tile_folder, labels=csv, progress=False)
    by_name = {r["name"]: r for r in lib.store.tile_rows(lib.store.all_ids("image")).values()}
    assert (by_name["pink_0.png"]["label"], by_name["pink_0.png"]["source_id"]) == ("tumour", "P1")
    assert (by_name["pink_1.png"]["label"], by_name["pink_1.png"]["source_id"]) == ("pink", "P1")
    assert by_name["pale_0.png"]["metadata"] == {"site": "lung"}
    assert (by_name["pink_2.png"]["label"], by_name["pink_2.png"]["source_id"]) == ("pink", None)
    hits = _search_all(lib, tile_folder / "pink" / "pink_3.png", where={"site": "colon"})
    assert {h.slide for h in hits} == {"pink_0.png", "pink_1.png"}


def test_incremental_add_keeps_old_ids(lib: Library, tile_folder: Path,
                                       pyramid_tiff: Path) -> None:
    lib.add(tile_folder, progress=False)
    old = {r["path"]: r["id"] for r in lib.store.tile_rows(lib.store.all_ids("image")).values()}
    lib.close()
    with Library.open(lib.root) as reopened:
        reopened.add([pyramid_tiff], progress=False)
        rows = reopened.store.tile_rows(reopened.store.all_ids("image")).values()
        now = {r["path"]: r["id"] for r in rows if r["kind"] == "image"}
        assert now == old
        assert min(r["id"] for r in rows if r["kind"] == "slide") > max(old.values())
        _assert_index_matches_store(reopened)


# -- image queries -----------------------------------------------------------------------------
def test_image_query_returns_itself_first(lib: Library, tile_folder: Path) -> None:
    lib.add(tile_folder, progress=False)
    for path in _tiles(tile_folder):
        hits = lib.search(image=path, k=3)
        assert hits[0].path == str(path.resolve()), path.name
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].kind == "tile" and hits[0].label == path.parent.name
        assert hits[1].score < hits[0].score
    pixels = np.asarray(Image.open(_tiles(tile_folder)[0]).convert("RGB"))
    assert lib.search(image=pixels, k=1)[0].slide == _tiles(tile_folder)[0].name
    assert lib.search(image=Image.fromarray(pixels), k=1)[0].slide == _tiles(tile_folder)[0].name


def test_where_and_exclude_filters(lib: Library, tile_folder: Path) -> None:
    csv = tile_folder / "ids.csv"
    csv.write_text("path,source_id\n" + "".join(
        f"{p.relative_to(tile_folder)},P{i % 3}\n" for i, p in enumerate(_tiles(tile_folder))))
    lib.add(tile_folder, labels=csv, progress=False)
    query = _tiles(tile_folder)[0]  # its own source id is P0
    own = lib.store.tile_rows(lib.store.all_ids("image"))
    assert {r["source_id"] for r in own.values()} == {"P0", "P1", "P2"}
    hits = _search_all(lib, query, exclude={"source_id": "P0"})
    assert len(hits) == 8 and all(h.source_id != "P0" for h in hits)
    hits = _search_all(lib, query, where={"label": "purple"})
    assert len(hits) == 4 and all(h.label == "purple" for h in hits)
    hits = _search_all(lib, query, where={"label": ["purple", "pale"]},
                       exclude={"source_id": ["P1", "P2"]})
    assert hits and all(h.label != "pink" and h.source_id == "P0" for h in hits)
    assert lib.search(image=query, where={"label": "absent"}) == []


def test_region_query_finds_overlapping_tiles_first(lib: Library, tile_folder: Path,
                                                     pyramid_tiff: Path) -> None:
    lib.add([tile_folder, pyramid_tiff], progress=False)
    region = (448, 448, 896, 896)  # exactly four grid tiles of the slide
    hits = lib.search(region=(pyramid_tiff, *region), k=6)
    x, y, w, h = region
    for hit in hits[:4]:
        assert hit.path == str(pyramid_tiff)
        assert hit.x < x + w and hit.x + hit.w > x and hit.y < y + h and hit.y + hit.h > y
    spec = f"{pyramid_tiff}:{x},{y},{w},{h}"
    assert [h.id for h in lib.search(region=spec, k=4)] == [h.id for h in hits[:4]]
    with pytest.raises(InputError, match="outside"):
        lib.search(region=(pyramid_tiff, 2000, 0, 448, 448))


def test_region_equal_to_tile_returns_that_tile(lib: Library, pyramid_tiff: Path) -> None:
    lib.add([pyramid_tiff], progress=False)
    for row in lib.store.tile_rows(lib.store.all_ids("image")).values():
        hit = lib.search(region=(pyramid_tiff, row["x"], row["y"], row["w"], row["h"]), k=1)[0]
        assert hit.id == row["id"] and hit.score == pytest.approx(1.0, abs=1e-5)


def test_slide_query_returns_itself_with_regions_when_asked(
        lib: Library, tile_folder: Path, pyramid_tiff: Path) -> None:
    lib.add([tile_folder, pyramid_tiff], progress=False)
    assert str(pyramid_tiff) not in {h.path for h in lib.search(slide=pyramid_tiff, k=3)}
    hits = lib.search(slide=pyramid_tiff, k=3, include_query_region=True)
    top = hits[0]
    assert top.kind == "slide" and top.path == str(pyramid_tiff)
    assert top.regions[0].score == pytest.approx(1.0, abs=1e-4)  # its own tiles
    assert top.regions and all(r.path == str(pyramid_tiff) for r in top.regions)
    # its regions are its own tiles, each matched to itself
    assert all(r.score == pytest.approx(1.0, abs=1e-4) for r in top.regions)
    assert len({h.path for h in hits}) == len(hits)
    assert all(h.score < top.score for h in hits[1:])


def test_hit_pixels_and_info(lib: Library, tile_folder: Path, pyramid_tiff: Path) -> None:
    lib.add(tile_folder, progress=False)
    slide_tiles = lib.add([pyramid_tiff], progress=False).tiles
    tile_hit = lib.search(image=_tiles(tile_folder)[0], k=1)[0]
    slide_hit = lib.search(slide=pyramid_tiff, k=1, include_query_region=True)[0]
    for hit in (tile_hit, slide_hit):
        pixels = lib.hit_pixels(hit)
        assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert lib.hit_pixels(tile_hit, px=64).shape == (64, 64, 3)
    info = lib.info()
    assert info["path"] == str(lib.root)
    assert info["sources"] == 13 and info["slides"] == 1 and info["images"] == 12
    assert info["tiles"] == 12 + slide_tiles and slide_tiles > 1
    assert info["encoder"]["name"] == "classic" and info["encoder"]["modalities"] == ["image"]
    assert info["encoder"]["dim"] == lib.encoder.dim
    assert info["text_encoder"] == "minilm" and info["index"] == "flat"
    assert info["tiling"] == {"target_mpp": 0.5, "tile_px": 224, "min_tissue": 0.5,
                              "overlap": 0.0}
    assert info["reports"] == 0


def test_bad_queries_raise(lib: Library, tile_folder: Path) -> None:
    lib.add(tile_folder, progress=False)
    query = _tiles(tile_folder)[0]
    with pytest.raises(InputError, match="exactly one"):
        lib.search()
    with pytest.raises(InputError, match="exactly one"):
        lib.search(image=query, text="pink")
    with pytest.raises(InputError, match="k must"):
        lib.search(image=query, k=0)
    with pytest.raises(EmptyQueryError):
        lib.search(text="   ")


# -- text --------------------------------------------------------------------------------------
REPORTS = [
    {"report_id": "r-adeno", "label": "tumour",
     "text": "Invasive moderately differentiated adenocarcinoma of the colon with glands."},
    {"report_id": "r-node", "label": "normal",
     "text": "Lymph node with reactive follicular hyperplasia; no metastatic disease."},
    {"report_id": "r-skin", "label": "benign",
     "text": "Seborrheic keratosis of the skin of the back, completely excised."},
    {"report_id": "r-bone", "label": "other",
     "text": "Fractured femoral head with osteoporotic trabecular bone."},
]


def test_text_to_reports_with_minilm(lib: Library) -> None:
    report = lib.add_reports(REPORTS)
    assert sorted(report.added) == sorted(r["report_id"] for r in REPORTS)
    hits = lib.search(text="colon adenocarcinoma", k=4)
    assert [h.kind for h in hits] == ["report"] * 4
    assert hits[0].report_id == "r-adeno" and hits[0].label == "tumour"
    assert lib.search(text="lymph node hyperplasia", k=1)[0].report_id == "r-node"
    assert lib.search(text="bone fracture", where={"label": "other"}, k=4)[0].report_id == "r-bone"
    assert "r-adeno" not in {h.report_id for h in lib.search(
        text="colon adenocarcinoma", exclude={"label": "tumour"}, k=4)}
    again = lib.add_reports(REPORTS)
    assert again.added == [] and len(again.unchanged) == 4
    assert lib.info()["reports"] == 4 and len(lib.indexes["text"]) == 4
    changed = [dict(r) for r in REPORTS]
    changed[3]["text"] = "Squamous cell carcinoma of the lung, keratinising."
    assert lib.add_reports(changed).added == ["r-bone"]
    assert lib.info()["reports"] == 4 and len(lib.indexes["text"]) == 4
    hits = lib.search(text="lung squamous carcinoma", k=10)
    assert len(hits) == 4 and len({h.report_id for h in hits}) == 4
    assert hits[0].report_id == "r-bone" and "keratinising" in hits[0].text
    assert all("Fractured" not in (h.text or "") for h in hits)
    lib.close()
    # persisted: the same answer after a reopen
    with Library.open(lib.root, text_encoder=_minilm()) as reopened:
        assert reopened.search(text="lung squamous carcinoma", k=1)[0].report_id == "r-bone"
        assert len(reopened.indexes["text"]) == 4


def test_cross_modal_needs_text_tower(lib: Library, tile_folder: Path) -> None:
    lib.add(tile_folder, progress=False)
    with pytest.raises(NoTextTowerError, match="classic"):
        lib.search(text="pink tissue", target="tiles")
    with pytest.raises(NoTextTowerError, match="classic"):
        lib.search(image=_tiles(tile_folder)[0], target="reports")


def test_multimodal_text_to_image_and_image_to_text(tmp_path: Path, tile_folder: Path) -> None:
    with Library.create(tmp_path / "mm", encoder=FakeClip(), text_encoder=_minilm()) as lib:
        lib.add(tile_folder, progress=False)
        lib.add_reports([{"report_id": f"rep-{c}", "text": f"mostly {c} staining throughout",
                          "label": c} for c in PALETTES])
        assert len(lib.indexes["joint"]) == 3
    # the stored encoder info checks out on reopen
    with Library.open(tmp_path / "mm", encoder=FakeClip(), text_encoder=_minilm()) as lib:
        for colour in PALETTES:
            hits = lib.search(text=f"{colour} tissue", target="tiles", k=4)
            assert [h.label for h in hits] == [colour] * 4, colour
            tile = tile_folder / colour / f"{colour}_0.png"
            hits = lib.search(image=tile, target="reports", k=3)
            assert hits[0].kind == "report" and hits[0].report_id == f"rep-{colour}", colour
        hits = lib.search(text="purple", target="tiles", k=12, exclude={"label": "purple"})
        assert len(hits) == 8 and "purple" not in {h.label for h in hits}


# -- removing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_remove_from_sqlite_and_faiss(tmp_path: Path, tile_folder: Path, kind: str) -> None:
    lib = Library.create(tmp_path / "lib", index=kind, encoder="classic")  # type: ignore[arg-type]
    lib.add(tile_folder, progress=False)
    gone = tile_folder / "pink" / "pink_0.png"
    assert lib.remove(gone).tiles == 1
    assert lib.remove("pink_1.png").tiles == 1  # by file name too
    assert lib.info()["tiles"] == 10 and lib.info()["labels"]["pink"] == 2
    assert len(lib.indexes["image"]) == 10
    _assert_index_matches_store(lib)
    names = {h.slide for h in _search_all(lib, gone)}
    assert len(names) == 10 and not names & {"pink_0.png", "pink_1.png"}
    with pytest.raises(InputError, match="no such source"):
        lib.remove("pink_0.png")
    lib.close()
    with Library.open(tmp_path / "lib") as reopened:  # the saved FAISS file agrees
        assert len(reopened.indexes["image"]) == 10
        assert "pink_0.png" not in {h.slide for h in _search_all(reopened, gone)}


# -- crash consistency -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_reconcile_after_lost_or_stale_faiss(tmp_path: Path, tile_folder: Path,
                                             pyramid_tiff: Path, kind: str) -> None:
    root = tmp_path / "lib"
    with Library.create(root, index=kind, encoder="classic") as lib:  # type: ignore[arg-type]
        lib.add(tile_folder, progress=False)
    faiss_file = root / "vectors" / "image.faiss"
    shutil.copy(faiss_file, tmp_path / "old.faiss")
    with Library.open(root) as lib:  # later work: one source gone, a slide added
        lib.remove("pale_0.png")
        lib.add([pyramid_tiff], progress=False)
        n_tiles = lib.info()["tiles"]
    for damage in ("stale", "missing"):
        if damage == "stale":  # as if the process died before the index was saved
            shutil.copy(tmp_path / "old.faiss", faiss_file)
        else:
            faiss_file.unlink()
        with Library.open(root) as lib:
            _assert_index_matches_store(lib)
            assert len(lib.indexes["image"]) == n_tiles
            for path in _tiles(tile_folder):
                hits = _search_all(lib, path)
                assert len(hits) == n_tiles and len({h.id for h in hits}) == n_tiles
                assert "pale_0.png" not in {h.slide for h in hits}
                if path.name != "pale_0.png":
                    assert hits[0].slide == path.name
        with Library.open(root) as lib:  # the repaired index was saved on close
            assert set(lib.indexes["image"].ids().tolist()) == set(
                lib.store.all_ids("image").tolist())
            assert not lib.indexes._dirty


def test_ann_libraries_agree_with_flat(tmp_path: Path, tile_folder: Path) -> None:
    tops = {}
    for kind in ("flat", "hnsw", "ivfpq"):
        with Library.create(tmp_path / kind, index=kind, encoder="classic") as lib:  # type: ignore[arg-type]
            lib.add(tile_folder, progress=False)
            tops[kind] = [lib.search(image=p, k=1)[0].slide for p in _tiles(tile_folder)]
    assert tops["flat"] == [p.name for p in _tiles(tile_folder)]
    assert tops["hnsw"] == tops["flat"]
    assert tops["ivfpq"] == tops["flat"]


# -- real slides -------------------------------------------------------------------------------
@pytest.mark.shared
def test_real_slides_region_self_retrieval(tmp_path: Path, shared_data: Path) -> None:
    cmu = shared_data / "tiny-wsi" / "cmu-1-small-region.svs"
    tcga = shared_data / "tiny-wsi" / "tcga-cr-7395-01a-01-ts1.svs"
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        assert lib.add([cmu], progress=False).tiles > 0  # mpp from the file (0.499)
        assert lib.add([tcga], mpp=0.25, progress=False).tiles > 0  # the file has none
        rows = list(lib.store.tile_rows(lib.store.all_ids("image")).values())
        by_path = {p: [r for r in rows if r["path"] == str(p)] for p in (cmu, tcga)}
        for path, mpp in ((cmu, None), (tcga, 0.25)):
            picks = by_path[path][:: max(1, len(by_path[path]) // 4)][:4]
            for row in picks:
                box = (row["x"], row["y"], row["w"], row["h"])
                hit = lib.search(region=(path, *box), mpp=mpp, k=1)[0]
                assert hit.id == row["id"], (path.name, box)
