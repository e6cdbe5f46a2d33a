"""open_clip encoders (quiltnet, biomedclip) on a tiny random CLIP in open_clip's real formats.

A folder holds ``open_clip_config.json`` + ``open_clip_model.safetensors`` as a hub repository
does; a bare ``.pt`` file goes with a registered architecture. Tokenizer: open_clip's bundled
BPE (no download). No network: the hub is set offline.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import safetensors.torch
import torch

from histoseek import create_encoder
from histoseek.encoders import open_clip_models
from histoseek.encoders.base import l2_normalise
from histoseek.encoders.torch_tower import tiles_to_tensor
from histoseek.errors import WeightsNotFoundError

TINY_ARCH = "histoseek-test-tiny-clip"
MODEL_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
MEAN, STD = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
CPU = torch.device("cpu")


# offline_hub and tiles come from tests/conftest.py
pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def clip_model() -> open_clip.CLIP:
    torch.manual_seed(0)
    return open_clip.CLIP(**MODEL_CFG).eval()


@pytest.fixture(scope="module")
def clip_dir(clip_model: open_clip.CLIP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quiltnet")
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": {"mean": MEAN, "std": STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    safetensors.torch.save_file(clip_model.state_dict(), folder / "open_clip_model.safetensors")
    return folder


def _check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_folder_loads_both_towers_into_one_space(
    clip_dir: Path, clip_model: open_clip.CLIP, tiles: np.ndarray
) -> None:
    enc = create_encoder("quiltnet", pretrained=str(clip_dir))
    assert enc.info.modalities == ("image", "text")
    assert (enc.preprocess.input_px, enc.preprocess.mean, enc.preprocess.std) == (32, MEAN, STD)
    images = enc.encode_images(tiles)
    texts = enc.encode_texts(["tumour glands", "adipose tissue"])
    _check_vectors(images, 3, 16)
    _check_vectors(texts, 2, 16)
    np.testing.assert_array_equal(images, enc.encode_images(tiles))
    np.testing.assert_array_equal(texts, enc.encode_texts(["tumour glands", "adipose tissue"]))
    with torch.inference_mode():
        expected = clip_model.encode_image(tiles_to_tensor(tiles, enc.preprocess, CPU))
    np.testing.assert_allclose(images, l2_normalise(expected.numpy()), atol=1e-5)
    assert enc.info.version.startswith("sha256:")


def test_bare_file_uses_the_architecture_table(
    clip_dir: Path, clip_model: open_clip.CLIP, tiles: np.ndarray,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real entry is ViT-B-32-quickgelu (150M parameters); register the tiny shape instead.
    config_file = tmp_path / f"{TINY_ARCH}.json"
    config_file.write_text(json.dumps(MODEL_CFG))
    open_clip.add_model_config(config_file)
    monkeypatch.setitem(open_clip_models.OPEN_CLIP_ARCHS, "quiltnet", TINY_ARCH)
    file = tmp_path / "quiltnet.pt"
    torch.save(clip_model.state_dict(), file)
    enc = create_encoder("quiltnet", pretrained=str(file))
    assert enc.preprocess.mean == open_clip.OPENAI_DATASET_MEAN  # no config: OpenAI stats
    np.testing.assert_allclose(
        enc.encode_texts(["tumour"]),
        create_encoder("quiltnet", pretrained=str(clip_dir)).encode_texts(["tumour"]),
        atol=1e-5,
    )
    _check_vectors(enc.encode_images(tiles), 3, 16)


def test_quiltnet_table_names_a_builtin_architecture() -> None:
    for arch in open_clip_models.OPEN_CLIP_ARCHS.values():
        assert arch in open_clip.list_models()


def test_biomedclip_file_needs_its_folder(tmp_path: Path) -> None:
    file = tmp_path / "biomedclip.bin"
    file.write_bytes(b"not used")
    with pytest.raises(WeightsNotFoundError, match=r"open_clip_config\.json"):
        create_encoder("biomedclip", pretrained=str(file))


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="no-such-quiltnet"):
        create_encoder("quiltnet", pretrained=str(tmp_path / "no-such-quiltnet"))


def test_folder_without_weights_is_refused_not_randomly_initialised(
    clip_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(clip_dir / "open_clip_config.json", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="no weights file"):
        create_encoder("quiltnet", pretrained=str(tmp_path))


def test_weights_of_another_shape_are_refused(clip_dir: Path, tmp_path: Path) -> None:
    shutil.copy(clip_dir / "open_clip_config.json", tmp_path)
    safetensors.torch.save_file({"junk": torch.zeros(2)}, tmp_path / "open_clip_model.safetensors")
    with pytest.raises(WeightsNotFoundError, match="cannot load"):
        create_encoder("quiltnet", pretrained=str(tmp_path))


def test_hub_model_fails_fast_offline() -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="hf-hub:wisdomik/QuiltNet-B-32"):
        create_encoder("quiltnet")
    assert time.perf_counter() - start < 5
