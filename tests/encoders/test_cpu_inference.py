"""The CPU-optimised forward must give the eager model's vectors, or fall back to it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from histoseek.encoders.cpu_inference import ENV_SWITCH, optimise_for_cpu
from histoseek.encoders.torch_tower import CpuOptimisedForward
from histoseek.models.layers import gem


class SmallTower(torch.nn.Module):
    """Conv → BatchNorm → SiLU → GeM: the kinds of ops the real towers fuse."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)
        self.act = torch.nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        return torch.nn.functional.normalize(gem(y), dim=-1)


class BatchBakedTower(SmallTower):
    """Reshapes with the batch size as a Python int: tracing bakes that size in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).reshape(int(x.shape[0]), -1)


def test_optimised_matches_eager_at_any_batch_size() -> None:
    tower = SmallTower().eval()
    fast = optimise_for_cpu(tower, 32)
    assert fast is not tower
    for n in (1, 5, 17):
        x = torch.randn(n, 3, 32, 32)
        with torch.inference_mode():
            assert torch.allclose(fast(x), tower(x), atol=1e-5)


def test_leaves_the_callers_module_unchanged() -> None:
    tower = SmallTower().eval()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    optimise_for_cpu(tower, 32)
    assert tower.conv.weight.is_contiguous()  # not switched to channels_last
    for key, value in tower.state_dict().items():
        assert torch.equal(value, before[key])


def test_falls_back_to_eager_when_tracing_bakes_in_shapes(caplog) -> None:
    tower = BatchBakedTower().eval()
    with caplog.at_level(logging.INFO, logger="histoseek.encoders.cpu_inference"):
        fast = optimise_for_cpu(tower, 32)
    assert fast is tower
    assert "not used" in caplog.text


def test_falls_back_to_eager_when_the_optimiser_raises(monkeypatch, caplog) -> None:
    # torch 2.14's optimiser hits an internal assert on some conv-BN-ReLU graphs
    def broken(module: torch.jit.ScriptModule) -> None:
        raise RuntimeError("INTERNAL ASSERT FAILED")

    monkeypatch.setattr(torch.jit, "optimize_for_inference", broken)
    tower = SmallTower().eval()
    with caplog.at_level(logging.INFO, logger="histoseek.encoders.cpu_inference"):
        assert optimise_for_cpu(tower, 32) is tower
    assert "INTERNAL ASSERT" in caplog.text


def test_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "0")
    tower = SmallTower().eval()
    assert optimise_for_cpu(tower, 32) is tower


def test_lazy_forward_optimises_on_first_batch_only() -> None:
    tower = SmallTower().eval()
    forward = CpuOptimisedForward(tower, 32, torch.device("cpu"))
    assert forward._forward is None  # nothing traced before images are encoded
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        first = forward(x)
        chosen = forward._forward
        second = forward(x)
    assert chosen is forward._forward
    np.testing.assert_allclose(first.numpy(), second.numpy())
