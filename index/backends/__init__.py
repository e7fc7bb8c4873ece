"""Vector store backends: where a gallery's vectors are indexed and searched.

``faiss`` (embedded, the default) and ``milvus`` (a shared Milvus server) register here.
"""

from index.backends import faiss_backend, milvus_backend  # noqa: F401  (registration)
from index.backends.base import (
    DEFAULT_BACKEND,
    BackendSpec,
    VectorBackend,
    backend_class,
    list_backends,
    register_backend,
)

__all__ = [
    "DEFAULT_BACKEND",
    "BackendSpec",
    "VectorBackend",
    "backend_class",
    "list_backends",
    "register_backend",
]
