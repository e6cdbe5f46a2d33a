"""transformers encoders (phikon, plip) on tiny random models written by ``save_pretrained``.

The folders hold what the hub repositories hold (config, safetensors weights, image processor,
tokenizer), so loading them is the path a user with downloaded weights takes. No network.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

from histoseek import create_encoder
from histoseek.encoders.base import Preprocess, l2_normalise
from histoseek.encoders.torch_tower import tiles_to_tensor
from histoseek.errors import WeightsNotFoundError

CPU = torch.device("cpu")


# offline_hub and tiles come from tests/conftest.py
pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def phikon_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        image_size=32, patch_size=16,
    )
    folder = tmp_path_factory.mktemp("phikon")
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.1, 0.2, 0.3], image_std=[0.3, 0.2, 0.1],
        resample=3,
    ).save_pretrained(folder)
    return folder


def _tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP BPE: every letter is a token, no merges; enough to embed words."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def plip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    tokenizer = _tiny_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 2, "image_size": 32, "patch_size": 16,
        },
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("plip")
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_phikon_is_the_class_token_of_the_saved_model(
    phikon_dir: Path, tiles: np.ndarray
) -> None:
    enc = create_encoder("phikon", pretrained=str(phikon_dir))
    assert enc.info.modalities == ("image",)
    assert enc.preprocess == Preprocess(32, (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), "bicubic")
    vectors = enc.encode_images(tiles)
    _check_vectors(vectors, 3, 32)
    np.testing.assert_array_equal(vectors, enc.encode_images(tiles))
    reference = ViTModel.from_pretrained(phikon_dir, add_pooling_layer=False).eval()
    with torch.inference_mode():
        x = tiles_to_tensor(tiles, enc.preprocess, CPU)
        expected = reference(pixel_values=x).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(vectors, l2_normalise(expected), atol=1e-5)
    assert enc.info.version.startswith("sha256:")


def test_plip_embeds_images_and_texts_in_one_space(plip_dir: Path, tiles: np.ndarray) -> None:
    enc = create_encoder("plip", pretrained=str(plip_dir))
    assert enc.info.modalities == ("image", "text")
    assert enc.preprocess.input_px == 32
    images = enc.encode_images(tiles)
    texts = enc.encode_texts(["tumour glands", "adipose tissue"])
    _check_vectors(images, 3, 16)
    _check_vectors(texts, 2, 16)
    np.testing.assert_array_equal(texts, enc.encode_texts(["tumour glands", "adipose tissue"]))
    assert not np.allclose(texts[0], texts[1])
    reference = CLIPModel.from_pretrained(plip_dir).eval()
    with torch.inference_mode():
        pixel = tiles_to_tensor(tiles, enc.preprocess, CPU)
        expected = reference.get_image_features(pixel_values=pixel).pooler_output.numpy()
    np.testing.assert_allclose(images, l2_normalise(expected), atol=1e-5)


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="no-such-folder"):
        create_encoder("plip", pretrained=str(tmp_path / "no-such-folder"))


def test_other_model_family_is_refused(plip_dir: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="'clip' model"):
        create_encoder("phikon", pretrained=str(plip_dir))


def test_folder_without_weights_or_processor_says_what_is_missing(
    phikon_dir: Path, tmp_path: Path
) -> None:
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(phikon_dir / "config.json", no_weights)
    with pytest.raises(WeightsNotFoundError, match="no-weights"):
        create_encoder("phikon", pretrained=str(no_weights))
    no_processor = tmp_path / "no-processor"
    shutil.copytree(phikon_dir, no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(WeightsNotFoundError, match="image processor"):
        create_encoder("phikon", pretrained=str(no_processor))


def test_single_file_is_refused_with_the_next_step(phikon_dir: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="pass the folder"):
        create_encoder("phikon", pretrained=str(phikon_dir / "model.safetensors"))


def test_bare_hub_id_fails_fast_offline() -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="hf-hub:owkin/phikon") as info:
        create_encoder("phikon")  # registry default: owkin/phikon, not cached here
    assert time.perf_counter() - start < 5
    assert "pretrained=" in str(info.value)
