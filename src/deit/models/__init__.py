"""Students (DeiT vision transformers) and the name-based model registry.

The CNN teachers live in :mod:`deit.models.cnn` (the architectures) and
:mod:`deit.models.teachers` (loading, wrapping, evaluating a trained one).
"""

from .deit import HEADS, VisionTransformer
from .pos_embed import adapt_pos_embed, resample_pos_embed
from .registry import (
    NAME_SCHEME,
    SIZES,
    create_model,
    describe_model,
    find_size,
    list_models,
    model_name,
    parse_model_name,
    resolve_architecture,
)

__all__ = [
    "HEADS",
    "NAME_SCHEME",
    "SIZES",
    "VisionTransformer",
    "adapt_pos_embed",
    "create_model",
    "describe_model",
    "find_size",
    "list_models",
    "model_name",
    "parse_model_name",
    "resolve_architecture",
    "resample_pos_embed",
]
