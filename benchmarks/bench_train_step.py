"""Seconds per training step on this machine: v1 vs v2, pixels vs cached frozen maps.

    python benchmarks/bench_train_step.py [--steps 4] [--batch 64]

One full step (two 224 px views per tile, every supervised loss, backward, AdamW), side by
side: v1 (ResNet-10t, every layer trained) on pixels; v2 (frozen EfficientNet-Lite0 trunk +
tuned blocks) on pixels, running the frozen trunk every step; v2 on cached frozen maps
(``train.feature_cache_views``), running only the trainable part. Each in channels_last with
the trunk dtype ``train.precision: auto`` picks here. The first step is a warm-up and not
counted. Augmentation runs in data-loader workers and is timed apart (per batch, one core).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from histoseek.models.factory import create_model
from histoseek.training.augment import train_transform
from histoseek.training.loop import LossHeads, step_losses, trunk_dtype
from histoseek.training.losses import LossWeights

SETUPS = (("v1 ResNet-10t, pixels", "histoseek-base-v1", False),
          ("v2 lite0, pixels", "histoseek-base", False),
          ("v2 lite0, cached frozen maps", "histoseek-base", True))


def step_seconds(batch: dict[str, torch.Tensor], text: dict[str, torch.Tensor], name: str,
                 cached: bool, dtype: torch.dtype, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = create_model(name).train().to(memory_format=torch.channels_last)
    if cached:
        with torch.no_grad():
            batch = {**batch, "cached1": model.image.frozen_features(batch["view1"]),
                     "cached2": model.image.frozen_features(batch["view2"])}
        batch = {k: v for k, v in batch.items() if not k.startswith("view")}
    heads = LossHeads(model.image.tuned_dim, 6).train()
    weights = LossWeights(arcface=0.2, knowledge=1.0, fgcr=0.5, hierarchical=0.5)
    params = [p for p in list(model.parameters()) + list(heads.parameters()) if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=1e-3)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss, _ = step_losses(model, heads, batch, weights, text, torch.device("cpu"), dtype)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    n = args.batch
    batch = {"view1": torch.randn(n, 3, 224, 224, generator=g),
             "view2": torch.randn(n, 3, 224, 224, generator=g),
             "label": torch.randint(0, 6, (n,), generator=g), "tile": torch.arange(n),
             "slide": torch.randint(0, 20, (n,), generator=g),
             "patient": torch.randint(0, 10, (n,), generator=g)}
    text = {"prompt_emb": torch.randn(6, 30, 384, generator=g),
            "prompt_mask": torch.ones(6, 30, dtype=torch.bool),
            "attribute_emb": torch.randn(6, 9, 384, generator=g),
            "attribute_mask": torch.ones(6, 9, dtype=torch.bool)}
    dtype = trunk_dtype("auto", torch.device("cpu"))
    print(f"torch threads: {torch.get_num_threads()}; batch {n} x 2 views, 224 px; "
          f"precision 'auto' here = {dtype}")
    baseline = None
    for label, name, cached in SETUPS:
        secs = statistics.median(step_seconds(batch, text, name, cached, dtype, args.steps))
        baseline = baseline or secs
        print(f"  {label:30s} {secs:6.2f} s/step  ({baseline / secs:.2f}x the v1 step)")
    transform = train_transform(224, (0.5,) * 3, (0.5,) * 3)
    tile = np.random.default_rng(0).integers(0, 255, (224, 224, 3), np.uint8)
    started = time.perf_counter()
    for _ in range(2 * n):
        transform(tile.copy())
    print(f"  augmentation, one worker: {time.perf_counter() - started:.2f} s per batch")


if __name__ == "__main__":
    main()
