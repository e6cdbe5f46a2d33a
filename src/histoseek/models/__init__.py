"""Model code in the timm/open_clip style: JSON configs, plain ``nn.Module``s, one factory."""

from histoseek.models.factory import create_model, get_model_config, list_models

__all__ = ["create_model", "get_model_config", "list_models"]
