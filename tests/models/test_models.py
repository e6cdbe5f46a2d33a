"""histoseek.models: the registry, the towers' shapes and norms, GeM, and weight files
(packaged, tampered, missing, wrong architecture, fp16 round trip)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from histoseek.errors import UnknownEncoderError, WeightsNotFoundError
from histoseek.models import create_model, factory, get_model_config, list_models
from histoseek.models.factory import save_weights, sha256_of, weights_dir
from histoseek.models.layers import GeM

NAME = "histoseek-base"  # the shipped v2 (frozen general branch + tuned branch)
V1 = "histoseek-base-v1"  # ResNet-10t from scratch: cheap to build, used for shape checks
V2_DIM = 472 + 256


@pytest.fixture(scope="module")
def random_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(V1)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def packaged_path() -> Path:
    return weights_dir() / get_model_config(NAME)["weights"]["file"]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- registry ------------------------------------------------------------------------------
def test_list_models_has_the_builtin() -> None:
    assert {NAME, V1, "histoseek-base-lite2"} <= set(list_models())


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(UnknownEncoderError, match=NAME) as info:
        create_model("no-such-model")
    assert "no-such-model" in str(info.value)


def test_get_model_config_is_a_copy() -> None:
    config = get_model_config(NAME)
    config["architecture"]["embed_dim"] = 7
    assert get_model_config(NAME)["architecture"]["embed_dim"] == 256


# --- shapes and norms ----------------------------------------------------------------------
@torch.inference_mode()
def test_random_forward_gives_unit_vectors(random_model: torch.nn.Module,
                                           batch: torch.Tensor) -> None:
    emb = random_model.eval().encode_image(batch)
    assert emb.shape == (2, 256)
    assert torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])  # different inputs, different vectors


@torch.inference_mode()
def test_without_neck_is_smaller_and_still_unit(batch: torch.Tensor,
                                                random_model: torch.nn.Module) -> None:
    torch.manual_seed(0)
    plain = create_model(V1, use_neck=False)
    assert plain.image.neck is None
    assert n_params(plain) < n_params(random_model)
    emb = plain.encode_image(batch)
    assert emb.shape == (2, 256)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


@torch.inference_mode()
def test_region_embeddings_are_a_grid_of_unit_vectors(random_model: torch.nn.Module,
                                                      batch: torch.Tensor) -> None:
    fmap = random_model.image.feature_map(batch)
    regions = random_model.image.region_embeddings(fmap)
    assert regions.shape == (2, 4, 256)
    assert torch.allclose(regions.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    assert regions.shape == random_model.image.region_embeddings(fmap, grid=2).shape
    assert random_model.image.region_embeddings(fmap, grid=1).shape == (2, 1, 256)


@torch.inference_mode()
def test_text_projection_is_unit_norm_for_any_leading_shape(
        random_model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(2)
    flat = random_model.encode_text(torch.randn(3, 384, generator=gen))
    assert flat.shape == (3, 256)
    assert torch.allclose(flat.norm(dim=-1), torch.ones(3), atol=1e-5)
    grouped = random_model.encode_text(torch.randn(4, 5, 384, generator=gen))  # [C, P, 384]
    assert grouped.shape == (4, 5, 256)
    assert torch.allclose(grouped.norm(dim=-1), torch.ones(4, 5), atol=1e-5)


# --- GeM -----------------------------------------------------------------------------------
def test_gem_with_p1_is_average_pooling() -> None:
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(3)) + 0.1
    gem = GeM(p=1.0)
    expected = F.adaptive_avg_pool2d(x, 1).flatten(1)
    assert torch.allclose(gem(x), expected, atol=1e-6)


def test_gem_matches_a_hand_computed_generalised_mean() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # [1, 1, 2, 2]
    assert GeM(p=1.0)(x).item() == pytest.approx(2.5)
    assert GeM(p=2.0)(x).item() == pytest.approx(((1 + 4 + 9 + 16) / 4) ** 0.5, rel=1e-6)
    assert GeM(p=3.0)(x).item() == pytest.approx(((1 + 8 + 27 + 64) / 4) ** (1 / 3), rel=1e-6)
    # large p approaches the maximum, p below 1 is clamped to average pooling
    assert GeM(p=60.0)(x).item() == pytest.approx(4.0, rel=0.05)
    assert GeM(p=0.2)(x).item() == pytest.approx(2.5)


# --- packaged weights ----------------------------------------------------------------------
def test_shipped_weights_are_small_and_match_the_recorded_sha256() -> None:
    path = packaged_path()
    assert path.is_file()
    assert path.stat().st_size <= 25 * 1024 * 1024
    assert sha256_of(path) == get_model_config(NAME)["weights"]["sha256"]


@torch.inference_mode()
def test_packaged_weights_load_and_differ_from_the_imagenet_start(batch: torch.Tensor) -> None:
    trained = create_model(NAME, pretrained=True)
    assert not trained.training
    emb = trained.encode_image(batch)
    assert emb.shape == (2, V2_DIM)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    start = create_model(NAME).eval().encode_image(batch)  # ImageNet trunk, untrained heads
    general = trained.image.general_dim
    # the frozen general branch is the ImageNet one (fp16-stored), the tuned branch is trained
    assert torch.allclose(emb[:, :general], start[:, :general], atol=2e-3)
    assert not torch.allclose(emb[:, general:], start[:, general:], atol=1e-2)
    again = create_model(NAME, pretrained="packaged").encode_image(batch)
    assert torch.equal(emb, again)


def test_a_model_without_packaged_weights_asks_for_a_file() -> None:
    with pytest.raises(WeightsNotFoundError, match=r"ships no weights.*--pretrained"):
        create_model(V1, pretrained=True)


def test_tampered_packaged_weights_are_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = tmp_path / packaged_path().name
    shutil.copyfile(packaged_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(factory, "weights_dir", lambda: tmp_path)
    with pytest.raises(WeightsNotFoundError, match="sha256"):
        create_model(NAME, pretrained=True)


def test_missing_packaged_weights_say_how_to_get_them(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "weights_dir", lambda: tmp_path)
    with pytest.raises(WeightsNotFoundError, match="missing") as info:
        create_model(NAME, pretrained=True)
    message = str(info.value)
    assert "reinstall" in message and "histoseek train" in message


def test_missing_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="no such weights file"):
        create_model(NAME, pretrained=tmp_path / "nope.safetensors")


def test_unreadable_weights_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(WeightsNotFoundError, match="safetensors"):
        create_model(NAME, pretrained=junk)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    other = save_weights(create_model(V1, use_neck=False), tmp_path / "plain.safetensors")
    assert len(other) == 64
    with pytest.raises(WeightsNotFoundError, match="do not fit"):
        create_model(V1, pretrained=tmp_path / "plain.safetensors")
    save_weights(create_model(V1), tmp_path / "v1.safetensors")
    with pytest.raises(WeightsNotFoundError, match="do not fit model 'histoseek-base'"):
        create_model(NAME, pretrained=tmp_path / "v1.safetensors")


@torch.inference_mode()
def test_fp16_save_round_trip_stays_close(random_model: torch.nn.Module, batch: torch.Tensor,
                                          tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    digest = save_weights(random_model, path)
    assert digest == sha256_of(path)
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    reloaded = create_model(V1, pretrained=path)
    reference = random_model.eval()
    assert (reloaded.encode_image(batch) - reference.encode_image(batch)).abs().max() < 1e-2
    text = torch.randn(3, 384, generator=torch.Generator().manual_seed(4))
    assert (reloaded.encode_text(text) - reference.encode_text(text)).abs().max() < 1e-2


def test_weights_carry_the_architecture_they_were_trained_in(tmp_path: Path) -> None:
    """A run with model_overrides exports weights that rebuild its own shape by name."""
    from histoseek.models.factory import architecture_of

    model = create_model(NAME, tune_from=4, pretrained_backbone=False)
    path = tmp_path / "deep.safetensors"
    save_weights(model, path, architecture={"tune_from": 4})
    assert architecture_of(path) == {"tune_from": 4}
    assert create_model(NAME, pretrained=path).image.tune_from == 4
    plain = tmp_path / "plain.safetensors"
    save_weights(create_model(V1), plain)
    assert architecture_of(plain) == {}
    with pytest.raises(WeightsNotFoundError, match="do not fit"):  # without the record
        create_model(NAME, pretrained=path, tune_from=5)


def test_trained_weights_load_without_a_random_init_first(batch: torch.Tensor) -> None:
    """Built on the meta device and handed the file's tensors: the same model as initialising
    then copying the weights in, with nothing left on the meta device."""
    path = packaged_path()
    arch = {**factory.architecture(NAME, path), "pretrained_backbone": False}
    reference = factory.build_model(arch)
    reference.load_state_dict(factory.load_state(path))
    reference.eval()
    model = create_model(NAME, pretrained=True)
    tensors = [*model.parameters(), *model.buffers()]
    assert not any(t.is_meta for t in tensors) and not model.training
    assert [p.requires_grad for p in model.parameters()] == [
        p.requires_grad for p in reference.parameters()]
    for (key, mine), (_, theirs) in zip(model.state_dict().items(),
                                        reference.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs) and mine.dtype == theirs.dtype, key
    with torch.inference_mode():
        assert torch.equal(model.encode_image(batch), reference.encode_image(batch))
