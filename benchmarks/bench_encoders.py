"""CPU encoding speed of the offline encoders beside a timm ViT-S/16 of the same input size.

Tiles/s at 224 px, batch 64, on the same random uint8 tiles, each encoder timed over several
batches after a warm-up, all in one run so the ratios are side by side. The torch towers run
twice: as shipped (traced and oneDNN-fused, ``encoders/cpu_inference.py``) and eager
(``HISTOSEEK_CPU_OPTIMISE=0``), so the gain of that step is measured too.

    python benchmarks/bench_encoders.py --batches 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from histoseek import create_encoder
from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess
from histoseek.encoders.cpu_inference import ENV_SWITCH
from histoseek.encoders.torch_tower import CpuOptimisedForward, embed_tiles


class TimmViTSmall(Encoder):
    """Random-weight ViT-S/16 through timm: the cost reference of a common foundation model."""

    def __init__(self) -> None:
        import timm

        self.model = timm.create_model("vit_small_patch16_224", pretrained=False,
                                       num_classes=0).eval()
        self.info = EncoderInfo("timm-vit-s16 (random)", "-", 384, ("image",), Preprocess(224))

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self.model, tiles, self.info.preprocess, torch.device("cpu"))


class ModelTower(Encoder):
    """A histoseek model's image tower with untrained weights: the cost, not the quality
    (v1's weights no longer ship; its speed does not depend on them)."""

    def __init__(self, name: str) -> None:
        from histoseek.models import create_model

        self.model = create_model(name).eval()
        self.info = EncoderInfo(f"{name} (untrained)", "-", self.model.image.dim, ("image",),
                                Preprocess(224))
        self.forward = CpuOptimisedForward(self.model.image, 224, torch.device("cpu"))

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        return embed_tiles(self.forward, tiles, self.info.preprocess, torch.device("cpu"))


def rate(encoder: Encoder, tiles: np.ndarray, batches: int, optimise: bool = True) -> float:
    # the optimisation is chosen at the first batch, so the switch only needs to hold for it
    os.environ[ENV_SWITCH] = "1" if optimise else "0"
    encoder.encode_images(tiles[:8])
    os.environ.pop(ENV_SWITCH)
    t0 = time.perf_counter()
    for _ in range(batches):
        encoder.encode_images(tiles)
    return batches * len(tiles) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    tiles = np.random.default_rng(0).integers(0, 256, (args.batch, 224, 224, 3), np.uint8)
    print(f"torch threads: {torch.get_num_threads()}; batch {args.batch}, 224 px, CPU")
    results = {}
    for name in ("histoseek-base", "imagenet-lite0"):
        results[name] = rate(create_encoder(name), tiles, args.batches)
        results[f"{name} eager"] = rate(create_encoder(name), tiles, args.batches, False)
    for name in ("classic", "resnet18-random"):
        results[name] = rate(create_encoder(name), tiles, args.batches)
    results["histoseek-base-v1"] = rate(ModelTower("histoseek-base-v1"), tiles, args.batches)
    results["histoseek-base-v1 eager"] = rate(ModelTower("histoseek-base-v1"), tiles,
                                              args.batches, False)
    results["timm ViT-S/16"] = rate(TimmViTSmall(), tiles, args.batches)
    ref = results["timm ViT-S/16"]
    for name, r in results.items():
        print(f"{name:>23}: {r:7.1f} tiles/s  ({r / ref:.2f}x ViT-S/16, "
              f"{r / results['histoseek-base-v1']:.2f}x v1)")


if __name__ == "__main__":
    main()
