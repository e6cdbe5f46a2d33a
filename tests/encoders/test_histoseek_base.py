"""The built-in ``histoseek-base`` encoder: offline, deterministic, one joint 728-d space.

The text checks go through the knowledge tree's class prompts; the image check (with
../shared) uses EBHI-Seg tiles from the *test* split only, which training never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histoseek import create_encoder
from histoseek.encoders.base import Encoder
from histoseek.knowledge.tree import class_prompts, default_tree
from histoseek.models.factory import get_model_config, save_weights, sha256_of
from synthetic_images import he_like_pixels

NAME = "histoseek-base"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return create_encoder(NAME)


def tiles(n: int = 3) -> np.ndarray:
    return np.stack([he_like_pixels(224, 224, seed=s) for s in range(n)])


DIM = 472 + 256  # frozen general branch + tuned branch


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int = DIM) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def class_vector(enc: Encoder, name: str) -> np.ndarray:
    """Mean (re-normalised) text embedding of an entity's knowledge-tree prompts."""
    prompts = class_prompts(default_tree().resolve(name))
    mean = enc.encode_texts(prompts).mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_info_records_the_packaged_weights(encoder: Encoder) -> None:
    config = get_model_config(NAME)
    assert encoder.info.name == NAME
    assert encoder.info.dim == DIM
    assert set(encoder.info.modalities) == {"image", "text"}
    assert encoder.info.version.startswith(config["weights"]["sha256"][:16] + "-")
    pre = config["preprocess"]
    assert encoder.info.preprocess.input_px == pre["input_px"]
    assert tuple(encoder.info.preprocess.mean) == tuple(pre["mean"])


def test_image_and_text_embeddings_are_unit_vectors_of_one_space(encoder: Encoder) -> None:
    assert_unit_rows(encoder.encode_images(tiles(3)), 3)
    assert_unit_rows(encoder.encode_texts(["adenocarcinoma", "normal colonic mucosa"]), 2)


def test_embeddings_are_deterministic(encoder: Encoder) -> None:
    batch = tiles(2)
    np.testing.assert_array_equal(encoder.encode_images(batch), encoder.encode_images(batch))
    texts = ["tumour glands", "fat"]
    np.testing.assert_array_equal(encoder.encode_texts(texts), encoder.encode_texts(texts))
    # a tile's vector does not depend on its batch neighbours
    np.testing.assert_allclose(encoder.encode_images(batch[:1])[0],
                               encoder.encode_images(batch)[0], atol=1e-5)


def test_adenocarcinoma_text_is_closer_to_its_class_than_to_fat(encoder: Encoder) -> None:
    query = encoder.encode_texts(["adenocarcinoma of the colon"])[0]
    adeno = class_vector(encoder, "adenocarcinoma")
    adipose = class_vector(encoder, "adipose tissue")
    assert query @ adeno > query @ adipose + 0.1


def test_other_weights_give_another_version(tmp_path: Path) -> None:
    from histoseek.models import create_model

    path = tmp_path / "random.safetensors"
    digest = save_weights(create_model(NAME), path)
    enc = create_encoder(NAME, pretrained=str(path))
    assert enc.info.version.split("-")[0] == digest[:16] == sha256_of(path)[:16]
    assert not enc.info.version.startswith(get_model_config(NAME)["weights"]["sha256"][:16])


def test_architecture_changes_the_version_even_with_the_same_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """v2's general weight g changes the vectors, not the file: libraries must tell them apart."""
    from histoseek.models import factory

    packaged = create_encoder(NAME)
    config = get_model_config(NAME)
    config["architecture"]["general_weight"] = 0.5
    monkeypatch.setattr(factory, "get_model_config", lambda name: config)
    other = create_encoder(NAME)
    assert other.info.version.split("-")[0] == packaged.info.version.split("-")[0]
    assert other.info.version != packaged.info.version
    batch = tiles(1)
    assert not np.allclose(other.encode_images(batch), packaged.encode_images(batch))


PREVIOUS_V2_VERSION = "08629c763231ef57-da02fec6"  # v2-deep weights (tune_from 4), g = 0.9


def test_a_library_of_the_previous_v2_weights_refuses_the_new_ones(tmp_path: Path) -> None:
    """Same name, dim and preprocessing as the weights shipped before v2-l2sp: only the
    version differs, and that alone must stop a library from mixing the two kinds of vectors."""
    from histoseek import Library
    from histoseek.errors import LibraryMismatchError

    lib = Library.create(tmp_path / "lib", encoder=NAME)
    manifest = dict(lib.manifest.encoder)
    assert manifest["version"] != PREVIOUS_V2_VERSION and manifest["dim"] == DIM
    lib.store.set_meta({"encoder": {**manifest, "version": PREVIOUS_V2_VERSION}})
    lib.close()
    old = Library.open(tmp_path / "lib")
    with pytest.raises(LibraryMismatchError, match="re-index") as info:
        _ = old.encoder
    assert PREVIOUS_V2_VERSION in str(info.value) and manifest["version"] in str(info.value)
    old.close()


@pytest.mark.shared
def test_adenocarcinoma_test_tiles_sit_near_their_text(shared_data: Path,
                                                      encoder: Encoder) -> None:
    from histoseek.evaluation.datasets import load_dataset
    from histoseek.evaluation.protocols import Split
    from histoseek.search.queries import query_tile

    dataset = load_dataset(shared_data / "ebhi-seg" / "labels.csv")
    _, test_idx = Split.load(REPO / "configs" / "splits" / "ebhi-seg-seed0.json").indices(
        dataset)
    texts = encoder.encode_texts(["adenocarcinoma", "normal colonic mucosa"])
    means = {}
    for label in ("adenocarcinoma", "normal"):
        picked = sorted(str(dataset.paths[i]) for i in test_idx if dataset.labels[i] == label)
        assert len(picked) >= 10
        batch = np.concatenate([query_tile(p, 224) for p in picked[:10]])
        mean = encoder.encode_images(batch).mean(axis=0)
        means[label] = mean / np.linalg.norm(mean)
    adeno_sims = texts @ means["adenocarcinoma"]
    assert adeno_sims[0] > adeno_sims[1]
    normal_sims = texts @ means["normal"]
    assert normal_sims[1] > normal_sims[0]


def test_cpu_optimised_tower_gives_the_eager_vectors(encoder: Encoder, monkeypatch) -> None:
    """The shipped tower must really take the fast path, and lose nothing by it."""
    from histoseek.encoders.cpu_inference import ENV_SWITCH
    from histoseek.encoders.torch_tower import CpuOptimisedForward

    fast = encoder.encode_images(tiles(5))
    assert encoder._image_forward._forward is not encoder.model.image  # optimised, not fallen back
    monkeypatch.setenv(ENV_SWITCH, "0")
    encoder._image_forward = CpuOptimisedForward(encoder.model.image, 224, encoder.device)
    eager = encoder.encode_images(tiles(5))
    assert encoder._image_forward._forward is encoder.model.image
    np.testing.assert_allclose(fast, eager, atol=1e-4)
