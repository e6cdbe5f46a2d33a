"""Every training config in the repository loads: a typo in a key fails here, not hours in."""

from __future__ import annotations

from pathlib import Path

import pytest

from histoseek.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAINING = sorted(p for p in CONFIGS.rglob("*.yaml") if "zeroshot" not in p.parts)


def test_configs_are_found() -> None:
    assert CONFIGS / "histoseek-base.yaml" in TRAINING and len(TRAINING) >= 8
    assert CONFIGS / "v1" / "histoseek-base-v1.yaml" in TRAINING


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_training_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.name and config.train.epochs >= 1
    assert config.train.precision in ("auto", "fp32", "bf16")
    assert 0.0 <= config.train.ema_decay < 1.0
