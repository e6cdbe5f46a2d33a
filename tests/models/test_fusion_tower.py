"""histoseek-base v2's tower: frozen general branch, tuned branch, their join, the cache path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histoseek.encoders.registry import create_encoder
from histoseek.models.factory import build_model, get_model_config


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTOSEEK_CACHE", str(tmp_path_factory.getbasetemp() / "hs-cache"))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_model_config("histoseek-base")["architecture"]).eval()


def pixels(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def test_vectors_are_unit_and_text_lives_in_the_tuned_part(model: torch.nn.Module) -> None:
    image = model.encode_image(pixels())
    text = model.encode_text(torch.randn(4, 384))
    tower = model.image
    assert image.shape == (3, tower.general_dim + tower.tuned_dim) == (3, 472 + 256)
    assert torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.all(text[:, :tower.general_dim] == 0)
    # text . image = sqrt(1 - g) * (tuned text . tuned image): text ranks by the tuned branch
    sentences = torch.randn(4, 384, generator=torch.Generator().manual_seed(2))
    tuned_image = tower.embed_map(tower.feature_map(pixels()))
    expected = (1 - tower.general_weight) ** 0.5 * model.text(sentences) @ tuned_image.T
    assert torch.allclose(model.encode_text(sentences) @ image.T, expected, atol=1e-5)


@torch.inference_mode()
def test_general_branch_is_the_imagenet_lite0_encoder(model: torch.nn.Module) -> None:
    tiles = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), np.uint8)
    baseline = create_encoder("imagenet-lite0").encode_images(tiles)
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    general = model.image.general_embedding(model.image.frozen_features(x)).numpy()
    assert np.allclose(general, baseline, atol=1e-4)
    joint = model.encode_image(x).numpy()
    g = model.image.general_weight
    assert np.allclose(joint[:, :472], np.sqrt(g) * baseline, atol=1e-4)


@torch.inference_mode()
def test_cached_frozen_maps_give_the_pixel_path(model: torch.nn.Module) -> None:
    x = pixels(2, seed=3)
    frozen = model.image.frozen_features(x)
    assert model.image.tune_from == 5  # the shipped config: blocks 5-6 tuned
    # tap 2, and block 4's map: a tap of the general branch and the tuned blocks' input
    assert [tuple(f.shape[1:]) for f in frozen] == [(40, 28, 28), (112, 14, 14)]
    assert torch.allclose(model.image.tuned_feature_map(frozen), model.image.feature_map(x))


def test_only_the_tuned_part_trains_and_frozen_batchnorm_keeps_its_statistics(
        model: torch.nn.Module) -> None:
    tower = model.image
    frozen_names = [n for n, p in tower.named_parameters() if not p.requires_grad]
    trainable = [n for n, p in tower.named_parameters() if p.requires_grad]
    assert all(n.startswith(("stem.", "blocks.")) for n in frozen_names) and frozen_names
    assert all(n.startswith(("tuned_blocks.", "neck.", "pool.", "proj.")) for n in trainable)
    stats = tower.blocks[3][0].bn1.running_mean.clone()
    tower.train()
    try:
        assert not tower.blocks.training and not tower.stem.training
        assert tower.tuned_blocks.training
        out = tower.embed_map(tower.feature_map(pixels(4)))
        out.sum().backward()
        assert torch.equal(stats, tower.blocks[3][0].bn1.running_mean)
        assert tower.blocks[3][0].conv_pw.weight.grad is None
        assert tower.tuned_blocks[0][0].conv_pw.weight.grad is not None
    finally:
        tower.eval()
        model.zero_grad(set_to_none=True)


def test_tuning_from_earlier_blocks_gives_the_same_shapes() -> None:
    arch = get_model_config("histoseek-base")["architecture"]
    model = build_model({**arch, "tune_from": 3, "pretrained_backbone": False}).eval()
    with torch.inference_mode():
        frozen = model.image.frozen_features(pixels(1))
        assert [tuple(f.shape[1:]) for f in frozen] == [(40, 28, 28)]
        assert model.encode_image(pixels(1)).shape == (1, 728)


def test_bad_architecture_values_are_refused() -> None:
    arch = get_model_config("histoseek-base")["architecture"]
    with pytest.raises(ValueError, match="general_weight"):
        build_model({**arch, "general_weight": 1.0, "pretrained_backbone": False})
    with pytest.raises(ValueError, match="tune_from"):
        build_model({**arch, "tune_from": 7, "pretrained_backbone": False})
