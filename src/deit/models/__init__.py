"""Students (DeiT vision transformers) and the name-based model registry.

The CNN teachers live in :mod:`deit.models.cnn` (the architectures),
:mod:`deit.models.teacher_files` (loading, checking, exporting a trained one)
and :mod:`deit.models.teachers` (wrapping, predicting, evaluating it).
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
