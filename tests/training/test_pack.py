"""Training packs built from the bundled demo tiles (and the demo slide as unlabelled data):
only training sources go in, validation sources are disjoint, save/load is lossless, and the
pack records its tiling (old packs load with the legacy one)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import histoseek
from histoseek.errors import InputError
from histoseek.evaluation.datasets import load_dataset
from histoseek.evaluation.protocols import Split
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import tile_slide
from histoseek.training import pack as pack_module
from histoseek.training.data import (
    DEFAULT_TILING,
    LEGACY_TILING,
    PackTiling,
    TrainingPack,
    decode_jpeg,
)
from histoseek.training.evaluate_pack import evaluate_run
from histoseek.training.pack import build_pack, build_test_pack, knowledge_texts

DEMO = Path(histoseek.__file__).parent / "demo_data"
LABELS = DEMO / "tiles" / "labels.csv"
SLIDE = DEMO / "slides" / "cmu-1-small-region.svs"
EBHI = ["adenocarcinoma", "high_grade_in", "low_grade_in", "normal", "polyp",
        "serrated_adenoma"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("pack")
    split_path = root / "split.json"
    pack = build_pack(LABELS, split_path, [(SLIDE, None)], root / "train.npz",
                      val_fraction=0.34, seed=0)
    test = build_test_pack(LABELS, split_path, root / "test.npz")
    return {"root": root, "split": split_path, "pack": pack, "test": test}


def source_counts(split: Split) -> tuple[int, int]:
    dataset = load_dataset(LABELS)
    train, test = split.indices(dataset)
    return len(train), len(test)


def test_a_missing_split_is_written_by_source(built: dict[str, object]) -> None:
    split = Split.load(built["split"])
    assert split.train_sources and split.test_sources
    assert not set(split.train_sources) & set(split.test_sources)
    sources = set(load_dataset(LABELS).source_ids.tolist())
    assert set(split.train_sources) | set(split.test_sources) == sources


def test_pack_holds_the_training_sources_and_the_unlabelled_slide(
        built: dict[str, object]) -> None:
    pack: TrainingPack = built["pack"]
    n_train, _ = source_counts(Split.load(built["split"]))
    labelled = pack.label >= 0
    assert int(labelled.sum()) == n_train
    assert int((~labelled).sum()) > 0  # tiles of the demo slide
    assert np.all(pack.label[~labelled] == -1)
    assert not pack.is_val[~labelled].any()  # unlabelled tiles never validate
    assert pack.classes == EBHI
    assert set(pack.label[labelled].tolist()) == set(range(len(EBHI)))
    assert len(pack) == len(pack.label) == len(pack.slide) == len(pack.patient) == len(
        pack.is_val)
    assert set(pack.slide[~labelled].tolist()).isdisjoint(pack.slide[labelled].tolist())


def test_validation_tiles_are_held_out_by_patient(built: dict[str, object]) -> None:
    pack: TrainingPack = built["pack"]
    val = pack.is_val & (pack.label >= 0)
    fit = ~pack.is_val & (pack.label >= 0)
    assert val.sum() >= 6 and fit.sum() >= 8  # enough for validation and one batch of 8
    assert set(pack.patient[val].tolist()).isdisjoint(pack.patient[fit].tolist())


def test_tiles_are_224px_rgb_jpegs(built: dict[str, object]) -> None:
    pack: TrainingPack = built["pack"]
    for data in (pack.jpeg[0], pack.jpeg[-1]):
        assert data[:2] == b"\xff\xd8"
        tile = decode_jpeg(data)
        assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8


def test_knowledge_embeddings_follow_their_masks(built: dict[str, object]) -> None:
    pack: TrainingPack = built["pack"]
    assert pack.texts == knowledge_texts(EBHI)
    for emb, mask, kind in ((pack.prompt_emb, pack.prompt_mask, "prompts"),
                            (pack.attribute_emb, pack.attribute_mask, "attributes")):
        assert emb.shape[:2] == mask.shape and emb.shape[0] == len(EBHI) and emb.shape[2] == 384
        assert emb.dtype == np.float32
        for c, name in enumerate(EBHI):
            assert int(mask[c].sum()) == len(pack.texts[kind][name]) > 0
        norms = np.linalg.norm(emb, axis=-1)
        np.testing.assert_allclose(norms[mask], 1.0, atol=1e-4)
        assert np.all(norms[~mask] == 0.0)


def test_save_load_round_trip_is_lossless(built: dict[str, object], tmp_path: Path) -> None:
    pack: TrainingPack = built["pack"]
    loaded = TrainingPack.load(pack.save(tmp_path / "again" / "pack.npz"))
    assert loaded.jpeg == pack.jpeg
    assert loaded.classes == pack.classes
    assert loaded.texts == pack.texts
    for field in ("label", "slide", "patient", "is_val", "prompt_emb", "prompt_mask",
                  "attribute_emb", "attribute_mask"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(pack, field), field)
        assert getattr(loaded, field).dtype == getattr(pack, field).dtype, field
    # the file build_pack wrote is the same pack
    assert TrainingPack.load(built["root"] / "train.npz").jpeg == pack.jpeg


def test_test_pack_holds_only_the_test_sources(built: dict[str, object]) -> None:
    test: TrainingPack = built["test"]
    _, n_test = source_counts(Split.load(built["split"]))
    assert len(test) == n_test
    assert test.is_val.all()
    assert np.all(test.label >= 0)
    train_bytes = set(built["pack"].jpeg)
    assert not train_bytes & set(test.jpeg)


def test_loading_a_missing_pack_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="histoseek train"):
        TrainingPack.load(tmp_path / "missing.npz")


# -- the pack records how its tiles were cut and grouped -------------------------------------

def test_pack_records_its_tiling(built: dict[str, object]) -> None:
    pack: TrainingPack = built["pack"]
    assert pack.tiling == DEFAULT_TILING
    for name in ("train.npz", "test.npz"):
        assert TrainingPack.load(built["root"] / name).tiling == DEFAULT_TILING
        assert TrainingPack.load_tiling(built["root"] / name) == DEFAULT_TILING


def test_build_pack_cuts_and_groups_as_its_tiling_says(
        built: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pack: TrainingPack = built["pack"]
    fields = ("prompt_emb", "prompt_mask", "attribute_emb", "attribute_mask", "texts")
    monkeypatch.setattr(pack_module, "knowledge_arrays",  # no text encoder: not under test
                        lambda classes, text_encoder: {f: getattr(pack, f) for f in fields})
    tiling = PackTiling(tile_px=96, target_mpp=1.0, min_tissue=0.5, jpeg_quality=90,
                        patient_rule="file-name")
    small = build_pack(LABELS, built["split"], [(SLIDE, None)], tmp_path / "small.npz",
                       val_fraction=0.34, seed=0, tiling=tiling)
    assert TrainingPack.load(tmp_path / "small.npz").tiling == tiling
    assert decode_jpeg(small.jpeg[0]).shape == decode_jpeg(small.jpeg[-1]).shape == (96, 96, 3)
    with open_slide(SLIDE) as slide:  # the slide was cut on the tiling's grid, not 0.5 mpp
        expected = len(tile_slide(slide, tiling.tiling_config()))
        default = len(tile_slide(slide, DEFAULT_TILING.tiling_config()))
    assert int((small.label < 0).sum()) == expected != default


def test_patient_rules() -> None:
    name = Path("TCGA-CR-7395-01A-01-TS1.svs")
    assert PackTiling().patient_id(name) == "TCGA-CR-7395"
    assert PackTiling(patient_rule="file-name").patient_id(name) == name.name
    with pytest.raises(InputError, match="unknown patient_rule 'by-colour'"):
        PackTiling(patient_rule="by-colour")


def _rewrite_meta(src: Path, dest: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the pack file with its JSON metadata edited (an older or broken writer)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dest, **arrays)
    return dest


def test_a_pack_from_before_the_tiling_record_loads_with_the_legacy_tiling(
        built: dict[str, object], tmp_path: Path) -> None:
    old = _rewrite_meta(built["root"] / "train.npz", tmp_path / "old.npz",
                        lambda meta: meta.pop("tiling"))
    loaded = TrainingPack.load(old)
    assert loaded.tiling == LEGACY_TILING
    assert (LEGACY_TILING.tile_px, LEGACY_TILING.target_mpp) == (224, 0.5)
    assert loaded.jpeg == built["pack"].jpeg


def test_a_malformed_tiling_record_names_the_pack(built: dict[str, object],
                                                  tmp_path: Path) -> None:
    bad = _rewrite_meta(built["root"] / "train.npz", tmp_path / "bad.npz",
                        lambda meta: meta["tiling"].pop("tile_px"))
    with pytest.raises(InputError, match=r"bad\.npz: tiling record"):
        TrainingPack.load(bad)


def test_evaluate_run_refuses_a_test_pack_cut_at_another_scale(
        built: dict[str, object], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    trained = dataclasses.replace(DEFAULT_TILING, target_mpp=0.25)
    (run / "config.json").write_text(json.dumps({"model": "histoseek-base",
                                                 "pack_tiling": trained.to_dict()}))
    with pytest.raises(InputError, match=r"test\.npz: test pack tiling .* differs .* run run"):
        evaluate_run(run, built["root"] / "test.npz")
