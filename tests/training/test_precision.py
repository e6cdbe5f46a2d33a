"""Mixed precision in training: bf16 trunk on CPU must match fp32 closely and keep fp32 losses."""

from __future__ import annotations

import pytest
import torch

from histoseek.errors import InputError
from histoseek.models import create_model
from histoseek.training import loop
from histoseek.training.losses import LossWeights

CPU = torch.device("cpu")


def fake_batch(n: int = 6, px: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"view1": torch.randn(n, 3, px, px, generator=g),
            "view2": torch.randn(n, 3, px, px, generator=g),
            "label": torch.tensor([0, 1, 2, 0, 1, -1])[:n],
            "tile": torch.arange(n), "slide": torch.arange(n) // 2,
            "patient": torch.arange(n) // 3}


def fake_text(classes: int = 3, dim: int = 384) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"prompt_emb": torch.randn(classes, 4, dim, generator=g),
            "prompt_mask": torch.ones(classes, 4, dtype=torch.bool),
            "attribute_emb": torch.randn(classes, 5, dim, generator=g),
            "attribute_mask": torch.ones(classes, 5, dtype=torch.bool)}


def test_precision_names_are_checked() -> None:
    assert loop.trunk_dtype("fp32", CPU) == torch.float32
    assert loop.trunk_dtype("bf16", CPU) == torch.bfloat16
    assert loop.trunk_dtype("auto", torch.device("cuda")) == torch.float32
    with pytest.raises(InputError, match=r"train\.precision"):
        loop.trunk_dtype("fp16-ish", CPU)


def test_bf16_trunk_gives_nearly_the_fp32_loss_and_fp32_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("histoseek-base-v1").train().to(memory_format=torch.channels_last)
    heads = loop.LossHeads(model.image.tuned_dim, 3)
    weights = LossWeights(arcface=0.2, knowledge=1.0, fgcr=0.5, hierarchical=0.5)
    batch, text = fake_batch(), fake_text()
    results = {}
    trunk_out: list[torch.dtype] = []
    model.image.backbone.register_forward_hook(
        lambda _m, _i, out: trunk_out.append(out[-1].dtype))
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(2)  # same multinomial prompt pick in the FGCR loss
        model.zero_grad()
        loss, parts = loop.step_losses(model, heads, batch, weights, text, CPU, dtype)
        loss.backward()
        assert trunk_out[-1] == dtype  # the trunk really ran in the asked dtype
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        grads = [p.grad for p in model.image.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 for g in grads)
        results[dtype] = (float(loss.detach()), parts)
    fp32, bf16 = results[torch.float32][0], results[torch.bfloat16][0]
    assert set(results[torch.float32][1]) == set(results[torch.bfloat16][1])
    assert bf16 == pytest.approx(fp32, rel=0.05)
