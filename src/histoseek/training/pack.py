"""Build a ``TrainingPack`` from the shared data, the split and the knowledge tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from histoseek.evaluation.datasets import load_dataset
from histoseek.evaluation.protocols import Split, split_by_source
from histoseek.search.queries import query_tile
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import iter_tile_batches, tile_slide
from histoseek.training.data import (
    DEFAULT_TILING,
    PackTiling,
    TrainingPack,
    codes,
    encode_jpeg,
    padded_embeddings,
)


def knowledge_texts(classes: list[str]) -> dict[str, dict[str, list[str]]]:
    """Class prompts and attribute sentences from the knowledge tree, for every class."""
    from histoseek.knowledge.tree import attribute_sentences, class_prompts, default_tree

    tree = default_tree()
    prompts, attributes = {}, {}
    for name in classes:
        entity = tree.resolve(name)
        prompts[name] = class_prompts(entity)
        attributes[name] = attribute_sentences(entity)
    return {"prompts": prompts, "attributes": attributes}


def knowledge_arrays(classes: list[str], text_encoder: str = "minilm") -> dict[str, Any]:
    """The pack's text fields: frozen sentence embeddings of each class's knowledge texts."""
    from histoseek.encoders.registry import create_encoder

    texts = knowledge_texts(classes)
    encoder = create_encoder(text_encoder)
    prompt_emb, prompt_mask = padded_embeddings(
        [texts["prompts"][c] for c in classes], encoder.encode_texts)
    attribute_emb, attribute_mask = padded_embeddings(
        [texts["attributes"][c] for c in classes], encoder.encode_texts)
    return {"prompt_emb": prompt_emb, "prompt_mask": prompt_mask,
            "attribute_emb": attribute_emb, "attribute_mask": attribute_mask, "texts": texts}


def build_pack(labels_csv: Path, split_path: Path, unlabelled: list[tuple[Path, float | None]],
               out: Path, val_fraction: float = 0.15, seed: int = 0,
               text_encoder: str = "minilm", tiling: PackTiling = DEFAULT_TILING) -> TrainingPack:
    """Pack the training sources of ``split_path`` (written first if missing), cut and
    grouped as ``tiling`` says; the pack records ``tiling``."""

    dataset = load_dataset(labels_csv)
    if split_path.is_file():
        split = Split.load(split_path)
    else:
        split = split_by_source(dataset, test_fraction=0.3, seed=seed)
        split.save(split_path)
    train_idx, _ = split.indices(dataset)
    train = dataset.subset(train_idx, "train")
    val_split = split_by_source(train, test_fraction=val_fraction, seed=seed + 1)
    _, val_idx = val_split.indices(train)
    is_val = np.zeros(len(train), bool)
    is_val[val_idx] = True

    jpeg = [encode_jpeg(query_tile(p, tiling.tile_px)[0], tiling.jpeg_quality)
            for p in tqdm(train.paths, desc="packing tiles")]
    classes = train.classes
    label = np.array([classes.index(c) for c in train.labels], np.int64)
    slides = list(train.extra.get("slide_id", train.source_ids))
    patients = list(train.source_ids)
    for path, mpp in unlabelled:
        with open_slide(path, mpp=mpp) as slide:
            grid = tile_slide(slide, tiling.tiling_config())
            for _, tiles in iter_tile_batches(slide, grid, 32):
                jpeg.extend(encode_jpeg(t, tiling.jpeg_quality) for t in tiles)
                slides.extend([path.name] * len(tiles))
                patients.extend([tiling.patient_id(path)] * len(tiles))
        label = np.concatenate([label, np.full(len(jpeg) - len(label), -1, np.int64)])
        is_val = np.concatenate([is_val, np.zeros(len(jpeg) - len(is_val), bool)])

    knowledge = knowledge_arrays(classes, text_encoder)
    pack = TrainingPack(
        jpeg=jpeg, label=label, slide=codes(np.array(slides)), patient=codes(np.array(patients)),
        is_val=is_val, classes=classes, tiling=tiling, **knowledge)
    pack.save(out)
    return pack


def build_test_pack(labels_csv: Path, split_path: Path, out: Path,
                    text_encoder: str = "minilm", tiling: PackTiling = DEFAULT_TILING
                    ) -> TrainingPack:
    """Pack the *test* sources of a split (for evaluating runs where ../shared is absent);
    give it the training pack's ``tiling`` so both are cut alike."""

    dataset = load_dataset(labels_csv)
    _, test_idx = Split.load(split_path).indices(dataset)
    test = dataset.subset(test_idx, "test")
    classes = test.classes
    knowledge = knowledge_arrays(classes, text_encoder)
    pack = TrainingPack(
        jpeg=[encode_jpeg(query_tile(p, tiling.tile_px)[0], tiling.jpeg_quality)
              for p in tqdm(test.paths, desc="packing test tiles")],
        label=np.array([classes.index(c) for c in test.labels], np.int64),
        slide=codes(test.extra.get("slide_id", test.source_ids)), patient=codes(test.source_ids),
        is_val=np.ones(len(test), bool), classes=classes, tiling=tiling, **knowledge)
    pack.save(out)
    return pack
