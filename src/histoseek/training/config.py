"""Training configuration: a YAML file into frozen dataclasses (one place for every knob)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from histoseek.errors import InputError
from histoseek.training.losses import LossWeights


@dataclass(frozen=True)
class UnlabelledSlide:
    path: str
    mpp: float | None = None


@dataclass(frozen=True)
class DataConfig:
    labels: str
    split: str
    pack: str
    unlabelled: tuple[UnlabelledSlide, ...] = ()
    withhold: tuple[str, ...] = ()  # classes whose labels and knowledge are hidden in training
    val_fraction: float = 0.15


@dataclass(frozen=True)
class TrainConfig:
    ssl_epochs: int = 5
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    num_workers: int = 2
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    augment_strength: float = 1.0
    balanced_sampling: bool = False
    # "auto": bf16 autocast for the convolutional trunk on a CPU with native bf16 (about 2-3x
    # faster there), fp32 elsewhere (the shipped weights were trained in fp32 on a GPU)
    precision: str = "auto"
    # > 0: validate and export an exponential moving average of the weights (per step), which
    # damps the epoch-to-epoch swings of a small validation set; 0 keeps the raw weights
    ema_decay: float = 0.0
    # additive cosine margin of the knowledge alignment loss (0: plain cross-entropy)
    knowledge_margin: float = 0.0
    # v2 (fusion tower) only. > 0: compute the frozen trunk's maps once for this many augmented
    # views per tile and train the tuned branch on them (several times faster on a CPU)
    feature_cache_views: int = 0
    # learning rate of the pretrained blocks that are fine-tuned, relative to ``lr``
    backbone_lr_scale: float = 1.0
    # L2-SP: weight of ||w - w_pretrained||^2 over the fine-tuned pretrained blocks (0: off)
    l2sp_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ema_decay", "knowledge_margin"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise InputError(f"train.{name} must be in [0, 1), got {value}")
        if self.feature_cache_views == 1 or self.feature_cache_views < 0:
            raise InputError("train.feature_cache_views must be 0 (off) or at least 2, got "
                             f"{self.feature_cache_views}")
        for name in ("backbone_lr_scale", "l2sp_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"train.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RunConfig:
    name: str
    data: DataConfig
    train: TrainConfig = TrainConfig()
    losses: LossWeights = LossWeights()  # noqa: RUF009
    ssl_losses: LossWeights = LossWeights(simclr=1.0)  # noqa: RUF009
    model: str = "histoseek-base"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(sorted(known))}")
    return cls(**data)


def load_config(path: Path, **overrides: Any) -> RunConfig:
    """Read a run config; ``overrides`` replace top-level train fields (e.g. epochs=1)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read training config ({exc})") from exc
    if not isinstance(raw, dict) or "data" not in raw or "name" not in raw:
        raise InputError(f"{path}: a training config needs 'name' and 'data'")
    top = {f.name for f in fields(RunConfig)}  # a typo here would silently drop a section
    if set(raw) - top:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(set(raw) - top))}; "
                         f"expected {', '.join(sorted(top))}")
    data = dict(raw["data"])
    data["unlabelled"] = tuple(_build(UnlabelledSlide, u, f"{path}: data.unlabelled")
                               for u in data.get("unlabelled", []))
    data["withhold"] = tuple(data.get("withhold", []))
    train = {**raw.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    return RunConfig(
        name=raw["name"], model=raw.get("model", "histoseek-base"),
        model_overrides=dict(raw.get("model_overrides", {})), seed=int(raw.get("seed", 0)),
        data=_build(DataConfig, data, f"{path}: data"),
        train=_build(TrainConfig, train, f"{path}: train"),
        losses=_build(LossWeights, raw.get("losses", {}), f"{path}: losses"),
        ssl_losses=_build(LossWeights, raw.get("ssl_losses", {"simclr": 1.0}),
                          f"{path}: ssl_losses"),
    )
