"""Seconds per training step of histoseek-base on this machine, fp32 vs the CPU fast path.

    python benchmarks/bench_train_step.py [--steps 4] [--batch 64]

One full step of the shipped config (two 224 px views per tile, every supervised loss,
backward, AdamW) in three set-ups measured side by side: plain fp32 (NCHW), channels_last
fp32, and channels_last with the bf16 trunk that ``train.precision: auto`` picks on a CPU with
native bf16. The first step of each is a warm-up and not counted. Inputs are random tensors:
augmentation runs in data-loader workers and is timed apart (per batch, one core).
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

SETUPS = (("fp32, NCHW", False, torch.float32), ("fp32, channels_last", True, torch.float32),
          ("bf16 trunk, channels_last", True, torch.bfloat16))


def step_seconds(batch: dict[str, torch.Tensor], text: dict[str, torch.Tensor],
                 channels_last: bool, dtype: torch.dtype, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = create_model("histoseek-base").train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    else:  # step_losses asks for channels_last input; give the NCHW model NCHW input back
        model.image.backbone.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(),))
    heads = LossHeads(model.image.proj.out_features, 6).train()
    weights = LossWeights(arcface=0.2, knowledge=1.0, fgcr=0.5, hierarchical=0.5)
    params = list(model.parameters()) + list(heads.parameters())
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
    print(f"torch threads: {torch.get_num_threads()}; batch {n} x 2 views, 224 px; "
          f"precision 'auto' here = {trunk_dtype('auto', torch.device('cpu'))}")
    baseline = None
    for label, channels_last, dtype in SETUPS:
        secs = statistics.median(step_seconds(batch, text, channels_last, dtype, args.steps))
        baseline = baseline or secs
        print(f"  {label:26s} {secs:6.2f} s/step  ({baseline / secs:.2f}x fp32 NCHW)")
    transform = train_transform(224, (0.5,) * 3, (0.5,) * 3)
    tile = np.random.default_rng(0).integers(0, 255, (224, 224, 3), np.uint8)
    started = time.perf_counter()
    for _ in range(2 * n):
        transform(tile.copy())
    print(f"  augmentation, one worker: {time.perf_counter() - started:.2f} s per batch")


if __name__ == "__main__":
    main()
