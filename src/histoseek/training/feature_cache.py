"""Frozen-trunk features of augmented views, computed once and reused every epoch.

v2's stem and early blocks are frozen, so their output for a given augmented view never
changes. Computing them once for ``views`` augmented views per tile and training only the
tuned blocks, neck and heads on those maps makes an epoch several times cheaper on a CPU
(the frozen part is most of the forward pass and would otherwise run every step). Each
epoch still sees new pairs: two of the cached views at random, each flipped or rotated by
90° at random on the map. The cache is written atomically, so an interrupted build restarts
cleanly and a resumed run reuses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from histoseek.training.data import TrainingPack, decode_jpeg, ensure_writable


@dataclass
class FeatureCache:
    """``maps[s][r, v]``: frozen map ``s`` of view ``v`` of tile ``tiles[r]`` (fp16)."""

    tiles: np.ndarray  # [n] pack indices
    maps: list[torch.Tensor]  # each [n, views, C, H, W]

    @property
    def views(self) -> int:
        return int(self.maps[0].shape[1])

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"tiles": torch.from_numpy(self.tiles), "maps": self.maps}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FeatureCache:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(tiles=data["tiles"].numpy(), maps=list(data["maps"]))


@torch.inference_mode()
def build_feature_cache(tower: torch.nn.Module, pack: TrainingPack, tiles: np.ndarray,
                        transform: callable, views: int, device: torch.device,  # type: ignore[valid-type]
                        batch_size: int = 64, progress: bool = True) -> FeatureCache:
    """Run ``tower.frozen_features`` over ``views`` augmentations of each tile."""
    tower.eval()
    jobs = [(row, v) for row in range(len(tiles)) for v in range(views)]
    maps: list[torch.Tensor] | None = None
    decoded: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(jobs), desc=f"caching frozen features ({views} views/tile)",
               disable=not progress, dynamic_ncols=True)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        x = []
        for row, _ in chunk:
            i = int(tiles[row])
            if i not in decoded:
                decoded = {i: ensure_writable(decode_jpeg(pack.jpeg[i]))}  # rows arrive in order
            x.append(transform(decoded[i]))
        out = tower.frozen_features(torch.stack(x).to(device))
        if maps is None:
            maps = [torch.empty((len(tiles), views, *o.shape[1:]), dtype=torch.float16)
                    for o in out]
        rows = torch.tensor([r for r, _ in chunk])
        cols = torch.tensor([v for _, v in chunk])
        for store, o in zip(maps, out, strict=True):
            store[rows, cols] = o.to("cpu", torch.float16)
        bar.update(len(chunk))
    bar.close()
    assert maps is not None, "no tiles to cache"
    return FeatureCache(tiles=np.asarray(tiles), maps=maps)


def random_dihedral(maps: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """One random flip/90° rotation applied to every scale of one view alike."""
    k = int(torch.randint(0, 4, (), generator=generator))
    flip = bool(torch.randint(0, 2, (), generator=generator))
    out = []
    for m in maps:
        m = torch.rot90(m, k, dims=(-2, -1))
        out.append(torch.flip(m, dims=(-1,)) if flip else m)
    return out


class CachedTwoViewDataset(TorchDataset):
    """Two different cached views of each tile (frozen maps), with its label and ids."""

    def __init__(self, pack: TrainingPack, cache: FeatureCache, seed: int = 0) -> None:
        if cache.views < 2:
            raise ValueError("a feature cache needs at least 2 views per tile")
        self.pack, self.cache = pack, cache
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.cache.tiles)

    def __getitem__(self, row: int) -> dict[str, object]:
        i = int(self.cache.tiles[row])
        a, b = torch.randperm(self.cache.views, generator=self.generator)[:2].tolist()
        view = {}
        for name, v in (("cached1", a), ("cached2", b)):
            view[name] = random_dihedral([m[row, v].float() for m in self.cache.maps],
                                         self.generator)
        return {**view, "label": torch.tensor(int(self.pack.label[i])),
                "tile": torch.tensor(i), "slide": torch.tensor(int(self.pack.slide[i])),
                "patient": torch.tensor(int(self.pack.patient[i]))}
