"""The encoder contract (``encoders/base.py``) on every registered encoder that runs offline:
float32 unit rows of ``dim`` columns, the same vectors on a second call, ``[0, dim]`` for an
empty batch, and exactly the towers the encoder declares. Hub encoders need downloaded
weights and are skipped by name; each encoder is built once for the whole module."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from histoseek import create_encoder
from histoseek.encoders.base import Encoder
from histoseek.encoders.registry import get_encoder_spec, list_encoders
from histoseek.errors import InputError, NoTextTowerError, WeightsNotFoundError
from synthetic_images import he_like_pixels

TEXTS = ["a", "b"]


def _params() -> list[object]:
    params = []
    for name in list_encoders():
        spec = get_encoder_spec(name)
        marks = () if spec.offline else pytest.mark.skip(
            reason=f"{name} needs weights from the hub ({spec.default_pretrained})")
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@cache
def _build(name: str) -> Encoder | str:
    """The encoder, or why it cannot be built here (an offline model that ships no weights)."""
    try:
        return create_encoder(name)
    except WeightsNotFoundError as exc:
        return str(exc)


@pytest.fixture(params=_params())
def encoder(request: pytest.FixtureRequest) -> Encoder:
    built = _build(request.param)
    if isinstance(built, str):
        pytest.skip(f"{request.param} ships no weights, needs --pretrained FILE: {built}")
    return built


def _tile_px(enc: Encoder) -> int:
    return enc.preprocess.input_px if enc.preprocess is not None else 224


def _tiles(enc: Encoder) -> np.ndarray:
    """Two H&E-like tiles and one of uniform noise, at the encoder's input size."""
    px = _tile_px(enc)
    noise = np.random.default_rng(0).integers(0, 256, (px, px, 3), dtype=np.uint8)
    return np.stack([he_like_pixels(px, px, seed=1), he_like_pixels(px, px, seed=2), noise])


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_declared_towers_match_the_registry(encoder: Encoder) -> None:
    assert set(encoder.info.modalities) == set(get_encoder_spec(encoder.name).modalities)
    assert encoder.dim == encoder.info.dim > 0


def test_empty_image_batch_gives_zero_rows(encoder: Encoder) -> None:
    px = _tile_px(encoder)
    empty = np.zeros((0, px, px, 3), np.uint8)
    if not encoder.has_images:
        with pytest.raises(InputError, match="no image tower"):
            encoder.encode_images(empty)
        return
    out = encoder.encode_images(empty)
    assert out.dtype == np.float32 and out.shape == (0, encoder.dim)


def test_image_vectors_are_unit_float32_and_deterministic(encoder: Encoder) -> None:
    if not encoder.has_images:
        pytest.skip(f"{encoder.name} has no image tower")
    tiles = _tiles(encoder)
    first = encoder.encode_images(tiles)
    assert_unit_rows(first, len(tiles), encoder.dim)
    np.testing.assert_allclose(encoder.encode_images(tiles), first, atol=1e-5)


def test_text_tower_as_declared(encoder: Encoder) -> None:
    if not encoder.has_texts:
        with pytest.raises(NoTextTowerError, match=encoder.name):
            encoder.encode_texts(TEXTS)
        return
    first = encoder.encode_texts(TEXTS)
    assert_unit_rows(first, len(TEXTS), encoder.dim)  # one space with the images
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), first, atol=1e-5)
    empty = encoder.encode_texts([])
    assert empty.dtype == np.float32 and empty.shape == (0, encoder.dim)
