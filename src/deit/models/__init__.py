"""Students (DeiT vision transformers) and the name-based model registry."""

from .deit import HEADS, VisionTransformer, adapt_pos_embed, resample_pos_embed
from .registry import NAME_SCHEME, create_model, list_models, parse_model_name

__all__ = [
    "HEADS",
    "NAME_SCHEME",
    "VisionTransformer",
    "adapt_pos_embed",
    "create_model",
    "list_models",
    "parse_model_name",
    "resample_pos_embed",
]
