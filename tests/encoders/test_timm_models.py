"""timm encoders (uni, h-optimus-0, virchow2) on tiny random checkpoints in timm's real formats.

Each checkpoint is written as the hub repositories hold it (timm's ``config.json`` with
``architecture``, ``model_args`` and ``pretrained_cfg``, beside ``model.safetensors``) or as a
bare weights file, then loaded through ``create_encoder``: the path a user with downloaded
weights takes. The config is written here rather than by ``timm.models.save_for_hf`` because
older timm releases (1.0.29) do not record ``model_args`` there. No network: the hub is offline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import constants as hf_constants

from histoseek import create_encoder
from histoseek.encoders import timm_models
from histoseek.encoders.base import Preprocess, l2_normalise
from histoseek.encoders.timm_models import HOPTIMUS_MEAN, TIMM_ARCHS, TimmArch
from histoseek.encoders.torch_tower import tiles_to_tensor
from histoseek.errors import WeightsNotFoundError

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "init_values": 1e-5, "num_classes": 0}
UNI_ARGS = {**TINY, "img_size": 32, "patch_size": 16, "dynamic_img_size": True}
VIRCHOW_ARGS = {
    **TINY, "img_size": 28, "reg_tokens": 4, "mlp_ratio": 5.3375, "global_pool": "",
    "dynamic_img_size": True,
}
HOPTIMUS_ARGS = {**TINY, "img_size": 28, "global_pool": "token", "dynamic_img_size": False}
SWIGLU = {"mlp_layer": timm.layers.SwiGLUPacked, "act_layer": torch.nn.SiLU}


# offline_hub and tiles come from tests/conftest.py
pytestmark = pytest.mark.usefixtures("offline_hub")


def _write_timm_folder(
    folder: Path, arch: str, model: torch.nn.Module, model_args: dict[str, Any], **cfg: Any
) -> Path:
    """Write ``model`` as a timm hub repository: config.json + model.safetensors."""
    size = model_args["img_size"]
    pretrained_cfg = {
        "tag": "tiny", "custom_load": False, "input_size": [3, size, size],
        "fixed_input_size": not model_args.get("dynamic_img_size", False),
        "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 0,
        "pool_size": None, "first_conv": "patch_embed.proj", "classifier": "head", **cfg,
    }
    config = {
        "architecture": arch, "num_classes": 0, "num_features": model.num_features,
        "global_pool": model_args.get("global_pool", "token"), "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file(model.state_dict(), folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def uni_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_large_patch16_224", **UNI_ARGS).eval()


@pytest.fixture(scope="module")
def uni_dir(uni_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_timm_folder(
        tmp_path_factory.mktemp("uni") / "uni", "vit_large_patch16_224", uni_model, UNI_ARGS,
        mean=[0.1, 0.2, 0.3], std=[0.3, 0.2, 0.1],
    )


def _expected(model: torch.nn.Module, tiles: np.ndarray, pre: Preprocess) -> np.ndarray:
    with torch.inference_mode():
        return l2_normalise(model(tiles_to_tensor(tiles, pre, torch.device("cpu"))).numpy())


def _check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_uni_folder_loads_the_saved_weights_and_preprocessing(
    uni_dir: Path, uni_model: torch.nn.Module, tiles: np.ndarray
) -> None:
    enc = create_encoder("uni", pretrained=str(uni_dir))
    assert enc.info.modalities == ("image",)
    assert enc.preprocess == Preprocess(32, (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), "bicubic")
    vectors = enc.encode_images(tiles)
    _check_vectors(vectors, 3, 32)
    np.testing.assert_allclose(vectors, _expected(uni_model, tiles, enc.preprocess), atol=1e-5)
    np.testing.assert_array_equal(vectors, enc.encode_images(tiles))
    assert enc.encode_images(tiles[:0]).shape == (0, 32)
    assert enc.info.version.startswith("sha256:")


def test_virchow2_concatenates_class_token_and_mean_patch_token(
    tmp_path: Path, tiles: np.ndarray
) -> None:
    torch.manual_seed(1)
    model = timm.create_model("vit_huge_patch14_224", **VIRCHOW_ARGS, **SWIGLU).eval()
    # Like the real config.json, the folder leaves out mlp_layer/act_layer: the card passes them.
    _write_timm_folder(tmp_path / "v2", "vit_huge_patch14_224", model, VIRCHOW_ARGS)
    enc = create_encoder("virchow2", pretrained=str(tmp_path / "v2"))
    vectors = enc.encode_images(tiles)
    _check_vectors(vectors, 3, 64)
    with torch.inference_mode():
        tokens = model(tiles_to_tensor(tiles, enc.preprocess, torch.device("cpu")))
    assert tokens.shape[1] == 1 + 4 + 4  # class, 4 registers, 2x2 patches
    expected = torch.cat([tokens[:, 0], tokens[:, 5:].mean(dim=1)], dim=-1).numpy()
    np.testing.assert_allclose(vectors, l2_normalise(expected), atol=1e-5)


def test_h_optimus_0_keeps_its_own_normalisation(tmp_path: Path, tiles: np.ndarray) -> None:
    arch = "vit_giant_patch14_reg4_dinov2"
    model = timm.create_model(arch, **HOPTIMUS_ARGS)
    _write_timm_folder(tmp_path / "h0", arch, model, HOPTIMUS_ARGS)  # config: ImageNet stats
    enc = create_encoder("h-optimus-0", pretrained=str(tmp_path / "h0"))
    assert enc.preprocess.mean == HOPTIMUS_MEAN
    assert enc.preprocess.input_px == 28
    _check_vectors(enc.encode_images(tiles), 3, 32)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_bare_weights_file_uses_the_architecture_table(
    suffix: str, uni_model: torch.nn.Module, uni_dir: Path, tiles: np.ndarray,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real table entry is ViT-L (300M parameters); swap in the tiny shape, same code path.
    tiny = TimmArch(
        arch="vit_large_patch16_224",
        card_kwargs=TIMM_ARCHS["uni"].card_kwargs,
        arch_kwargs={"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2},
        preprocess=Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear"),
    )
    monkeypatch.setitem(timm_models.TIMM_ARCHS, "uni", tiny)
    file = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(uni_model.state_dict(), file)
    else:
        torch.save(uni_model.state_dict(), file)
    enc = create_encoder("uni", pretrained=str(file))
    assert enc.preprocess == tiny.preprocess
    vectors = enc.encode_images(tiles)
    np.testing.assert_allclose(vectors, _expected(uni_model, tiles, tiny.preprocess), atol=1e-5)
    if suffix == ".safetensors":  # same bytes as the folder's weights: same version
        folder_version = create_encoder("uni", pretrained=str(uni_dir)).info.version
        same = create_encoder("uni", pretrained=str(uni_dir / "model.safetensors"))
        assert same.info.version == folder_version


@pytest.mark.parametrize(
    ("name", "width", "prefix_tokens"),
    [("uni", 1024, 1), ("h-optimus-0", 1536, 5), ("virchow2", 1280, 5)],
)
def test_architecture_table_builds_the_published_shapes(
    name: str, width: int, prefix_tokens: int
) -> None:
    spec = TIMM_ARCHS[name]
    with torch.device("meta"):  # shapes only: no memory, no time
        model = timm.create_model(
            spec.arch, num_classes=0, **spec.card_kwargs, **spec.arch_kwargs
        )
        out = model.forward_features(torch.empty(1, 3, 224, 224))
    assert model.num_features == width
    assert model.num_prefix_tokens == prefix_tokens
    assert out.shape[1] == prefix_tokens + (224 // model.patch_embed.patch_size[0]) ** 2


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-weights"
    with pytest.raises(WeightsNotFoundError, match="no-such-weights"):
        create_encoder("uni", pretrained=str(missing))


def test_unprefixed_hub_id_asks_for_the_prefix() -> None:
    with pytest.raises(WeightsNotFoundError, match="hf-hub:org/name"):
        create_encoder("uni", pretrained="MahmoodLab/uni")


def test_folder_without_config_says_so(tmp_path: Path, uni_model: torch.nn.Module) -> None:
    safetensors.torch.save_file(uni_model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(WeightsNotFoundError, match=r"config\.json"):
        create_encoder("uni", pretrained=str(tmp_path))


def test_weights_of_another_model_are_refused(tmp_path: Path, uni_dir: Path) -> None:
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "config.json").write_text((uni_dir / "config.json").read_text())
    safetensors.torch.save_file({"junk": torch.zeros(3)}, folder / "model.safetensors")
    with pytest.raises(WeightsNotFoundError, match="wrong"):
        create_encoder("uni", pretrained=str(folder))


def test_gated_hub_model_fails_fast_with_the_way_to_get_it() -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        create_encoder("uni")  # registry default: hf-hub:MahmoodLab/uni
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "hf-hub:MahmoodLab/uni" in message
    assert "licence" in message and "hf auth login" in message and "pretrained=" in message
    assert "\n" not in message


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed loopback port stands in for "no network" without leaving the machine.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="unreachable"):
        create_encoder("virchow2", pretrained="hf-hub:paige-ai/Virchow2")
    assert time.perf_counter() - start < 10
