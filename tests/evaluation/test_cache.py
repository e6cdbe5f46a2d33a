"""The embedding cache: keyed by encoder identity and file bytes, never re-encodes a hit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.encoders.base import Encoder, EncoderInfo, l2_normalise
from histoseek.encoders.registry import create_encoder
from histoseek.evaluation.cache import EmbeddingCache, embed_paths, encoder_key


class Counting(Encoder):
    """Wraps an encoder, counting ``encode_images`` calls and tiles; may claim another version."""

    def __init__(self, inner: Encoder, version: str | None = None) -> None:
        self.inner = inner
        self.info = inner.info if version is None else replace(inner.info, version=version)
        self.calls = 0
        self.tiles = 0

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.tiles += len(tiles)
        return self.inner.encode_images(tiles)


class MeanColour(Encoder):
    """A fast stand-in: the mean RGB of a tile and its spread, as a unit vector."""

    info = EncoderInfo("mean-colour-test", "1", 6, ("image",))

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        flat = tiles.reshape(len(tiles), -1, 3).astype(np.float32)
        return l2_normalise(np.concatenate([flat.mean(axis=1), flat.std(axis=1)], axis=1))


@pytest.fixture(scope="module")
def classic() -> Encoder:
    return create_encoder("classic")


@pytest.fixture
def fast() -> Encoder:
    return MeanColour()


@pytest.fixture
def paths(tile_folder: Path) -> list[Path]:
    return sorted(tile_folder.rglob("*.png"))


def test_second_run_reads_the_cache(classic: Encoder, paths: list[Path], tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    first_enc = Counting(classic)
    first = embed_paths(first_enc, paths, cache, progress=False)
    assert first_enc.tiles == len(paths) == 12
    assert first.shape == (12, classic.dim) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    again = Counting(classic)
    second = embed_paths(again, paths, cache, progress=False)
    assert again.calls == 0, "cached vectors were re-encoded"
    np.testing.assert_array_equal(second, first)
    cache.close()

    # The cache lives on disk: a new connection to the same folder still hits.
    reopened = EmbeddingCache(tmp_path / "cache")
    third_enc = Counting(classic)
    np.testing.assert_array_equal(embed_paths(third_enc, paths, reopened, progress=False), first)
    assert third_enc.calls == 0
    reopened.close()


def test_changed_bytes_re_encode_only_that_file(classic: Encoder, paths: list[Path],
                                                tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    before = embed_paths(Counting(classic), paths, cache, progress=False)
    changed = 5
    pixels = np.full((224, 224, 3), (30, 160, 60), np.uint8)  # green: unlike every tile
    pixels[::4] = 0
    Image.fromarray(pixels).save(paths[changed])

    enc = Counting(classic)
    after = embed_paths(enc, paths, cache, progress=False)
    assert (enc.calls, enc.tiles) == (1, 1)
    others = np.arange(len(paths)) != changed
    np.testing.assert_array_equal(after[others], before[others])
    assert not np.allclose(after[changed], before[changed])
    np.testing.assert_allclose(after[changed], classic.encode_images(
        np.asarray(Image.open(paths[changed]).convert("RGB"))[None])[0], atol=1e-5)
    cache.close()


def test_another_encoder_version_uses_another_key(fast: Encoder, paths: list[Path],
                                                  tmp_path: Path) -> None:
    v1, v2 = Counting(fast), Counting(fast, version="2-test")
    assert encoder_key(v1, 224) != encoder_key(v2, 224)
    assert encoder_key(v1, 224) != encoder_key(v1, 256)
    cache = EmbeddingCache(tmp_path / "cache")
    embed_paths(v1, paths, cache, progress=False)
    embed_paths(v2, paths, cache, progress=False)
    assert v2.tiles == len(paths), "vectors of version 1 were served to version 2"
    # Both versions now sit side by side; neither evicts the other.
    v1_again, v2_again = Counting(fast), Counting(fast, version="2-test")
    embed_paths(v1_again, paths, cache, progress=False)
    embed_paths(v2_again, paths, cache, progress=False)
    assert v1_again.calls == v2_again.calls == 0
    # Another tile size is another key as well.
    other_px = Counting(fast)
    embed_paths(other_px, paths[:2], cache, tile_px=160, progress=False)
    assert other_px.tiles == 2
    cache.close()


def test_cached_rows_of_another_dim_are_ignored(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    cache.put("key", ["a", "b"], np.ones((2, 4), np.float32))
    assert set(cache.get("key", ["a", "b", "c"], 4)) == {"a", "b"}
    assert cache.get("key", ["a", "b"], 8) == {}
    assert cache.get("other", ["a"], 4) == {}
    cache.close()


def test_no_cache_and_batches(fast: Encoder, paths: list[Path]) -> None:
    whole = Counting(fast)
    one_batch = embed_paths(whole, paths, None, progress=False)
    batched = Counting(fast)
    in_fives = embed_paths(batched, paths, None, batch_size=5, progress=False)
    assert (whole.calls, batched.calls) == (1, 3)
    np.testing.assert_allclose(in_fives, one_batch, atol=1e-6)
    repeat = Counting(fast)
    embed_paths(repeat, paths, None, progress=False)
    assert repeat.tiles == len(paths)  # no cache: everything is encoded every time


def test_partial_hit_fills_the_right_rows(fast: Encoder, paths: list[Path],
                                          tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    reference = embed_paths(Counting(fast), paths, None, progress=False)
    embed_paths(Counting(fast), paths[::3], cache, progress=False)  # warm 0, 3, 6, 9
    enc = Counting(fast)
    mixed = embed_paths(enc, paths, cache, batch_size=4, progress=False)
    assert enc.tiles == 8
    np.testing.assert_allclose(mixed, reference, atol=1e-6)
    cache.close()
