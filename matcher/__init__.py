"""matcher: turns an image into a unit vector. Knows nothing of FAISS, HTTP or training."""

from matcher.backbones import create_backbone, list_backbones, register_backbone
from matcher.embedder import Embedder, create_embedder
from matcher.images import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    load_image,
)
from matcher.model import (
    EmbeddingModel,
    ModelConfig,
    build_pretrained,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from matcher.preprocess import MODALITIES, PreprocessConfig, preprocess

__all__ = [
    "MODALITIES",
    "CorruptImageError",
    "Embedder",
    "EmbeddingModel",
    "ImageError",
    "ImageTooLargeError",
    "ModelConfig",
    "NotAnImageError",
    "PreprocessConfig",
    "build_pretrained",
    "create_backbone",
    "create_embedder",
    "list_backbones",
    "load_checkpoint",
    "load_image",
    "load_model",
    "preprocess",
    "register_backbone",
    "save_checkpoint",
]
