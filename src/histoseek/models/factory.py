"""``create_model``: the one door to histoseek's own models.

Architectures and preprocessing live in ``configs/*.json`` (scanned on first use, like
open_clip's model configs); weights are safetensors files checked against the sha256 the
config records, so a corrupted or swapped file is refused rather than silently used.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from histoseek.errors import UnknownEncoderError, WeightsNotFoundError
from histoseek.hashing import sha256_file
from histoseek.models.towers import HistoseekModel, ImageTower

PACKAGED = "packaged"


def _config_dir() -> Path:
    return Path(str(files("histoseek.models") / "configs"))


def weights_dir() -> Path:
    return Path(str(files("histoseek.models") / "weights"))


@cache
def _configs() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(_config_dir().glob("*.json"))}


def list_models() -> list[str]:
    return list(_configs())


def get_model_config(name: str) -> dict[str, Any]:
    try:
        return copy.deepcopy(_configs()[name])
    except KeyError:
        raise UnknownEncoderError(
            f"unknown model '{name}'; known models: {', '.join(list_models())}") from None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a weights file (kept for callers; ``histoseek.hashing`` does the work)."""
    return sha256_file(path)


def resolve_weights(name: str, pretrained: str | Path | bool | None) -> Path | None:
    """Where the weights are: None (random init), the packaged file, or a local file."""
    if pretrained in (None, False):
        return None
    config = get_model_config(name)
    if pretrained is True or pretrained == PACKAGED:
        path = weights_dir() / config["weights"]["file"]
        expected = config["weights"].get("sha256")
        if not expected:
            raise WeightsNotFoundError(
                f"model '{name}' ships no weights; pass a trained weights file "
                "(--pretrained FILE, or NAME@FILE in evaluation)")
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{path}: the packaged weights of '{name}' are missing; reinstall histoseek "
                "or train them with `histoseek train --config configs/histoseek-base.yaml`")
        if expected and sha256_of(path) != expected:
            raise WeightsNotFoundError(
                f"{path}: sha256 does not match the one recorded for '{name}'; the file is "
                "corrupt or not the released weights (reinstall histoseek)")
        return path
    path = Path(pretrained)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such weights file for model '{name}'")
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsNotFoundError(f"{path}: not a readable safetensors file ({exc})") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def build_model(arch: dict[str, Any]) -> HistoseekModel:
    """An architecture config to a model. ``tower``: "scratch" (v1) or "fusion" (v2)."""
    arch = dict(arch)
    tower, text_dim = arch.pop("tower", "scratch"), arch.pop("text_dim", 384)
    if tower == "fusion":
        from histoseek.models.fusion_tower import FusionTower

        image = FusionTower(**arch)
    elif tower == "scratch":
        image = ImageTower(**arch)
    else:
        raise UnknownEncoderError(f"unknown tower '{tower}' (expected scratch or fusion)")
    return HistoseekModel(image, text_dim)


def create_model(name: str, pretrained: str | Path | bool | None = None,
                 **overrides: Any) -> HistoseekModel:
    """Build a registered model; ``pretrained``: None, True/"packaged" or a file path.

    ``overrides`` change architecture fields (e.g. ``use_neck=False`` for an ablation). With
    trained weights to load, nothing is initialised first only to be overwritten: neither the
    backbone's ImageNet start nor the random init (the model is built on the meta device and
    takes the file's tensors, strictly: every parameter and buffer must be in the file).
    """
    path = resolve_weights(name, pretrained)
    arch = {**architecture(name, path), **overrides}
    if path is None:
        return build_model(arch).eval()
    if "pretrained_backbone" in arch:
        arch["pretrained_backbone"] = False
    state = load_state(path)
    with torch.device("meta"):
        model = build_model(arch)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise WeightsNotFoundError(
            f"{path}: weights do not fit model '{name}' ({str(exc).splitlines()[0]})"
        ) from exc
    return model.eval()


ARCH_KEY = "histoseek.architecture_overrides"


def architecture_of(path: Path) -> dict[str, Any]:
    """Architecture fields a weights file records beside its tensors (see ``save_weights``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise WeightsNotFoundError(f"{path}: not a readable safetensors file ({exc})") from exc
    return json.loads(meta[ARCH_KEY]) if ARCH_KEY in meta else {}


def architecture(name: str, weights: Path | None) -> dict[str, Any]:
    """The architecture ``weights`` run in: the registered config, then what the file records."""
    stored = architecture_of(weights) if weights is not None else {}
    return {**get_model_config(name)["architecture"], **stored}


def save_weights(model: HistoseekModel, path: Path, half: bool = True,
                 architecture: dict[str, Any] | None = None) -> str:
    """Write weights as safetensors (fp16 by default) and return their sha256.

    ``architecture``: the fields that differ from the model's registered config (a run's
    ``model_overrides``); they travel in the file's metadata, so ``create_model(name,
    pretrained=file)`` rebuilds the shape the weights were trained in.
    """
    from safetensors.torch import save_file

    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {ARCH_KEY: json.dumps(architecture, sort_keys=True)} if architecture else None
    save_file(state, str(path), metadata=meta)
    return sha256_of(path)
