"""Pure mappings from gunmatch's index settings and filters to Milvus terms."""

from __future__ import annotations

import re

from index.categories import normalize_category
from index.factory import IndexConfig, default_nlist, resolve_kind
from index.types import Filters

METRIC = "IP"  # unit vectors: inner product is cosine similarity, as with FAISS
MAX_TOPK = 16_384  # Milvus refuses a larger limit
MILVUS_KIND = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT", "ivfpq": "IVF_PQ"}
KIND_OF_MILVUS = {v: k for k, v in MILVUS_KIND.items()}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def check_collection_name(name: str) -> str:
    """A valid Milvus collection name (letters, digits, underscores; not a digit first)."""
    if not _NAME.match(name):
        raise ValueError(f"invalid Milvus collection name {name!r}")
    return name


def index_params(config: IndexConfig, n: int, dim: int) -> tuple[str, str, dict]:
    """(gunmatch kind, Milvus index type, build params) for ``n`` vectors."""
    kind = resolve_kind(config, n)
    if kind == "hnsw":
        params = {"M": config.hnsw_m, "efConstruction": config.ef_construction}
    elif kind in ("ivf", "ivfpq"):
        params = {"nlist": config.nlist or default_nlist(n)}
        if kind == "ivfpq":
            m = config.pq_m or max(1, dim // 4)
            if dim % m:
                raise ValueError(f"pq_m={m} must divide the dimension {dim}")
            params |= {"m": m, "nbits": 8}
    else:
        params = {}
    return kind, MILVUS_KIND[kind], params


def search_params(config: IndexConfig, kind: str, limit: int) -> dict:
    """Per-query search parameters for an index of ``kind`` (ef is at least the limit)."""
    if kind == "hnsw":
        params = {"ef": max(config.ef_search, limit)}
    elif kind in ("ivf", "ivfpq"):
        params = {"nprobe": config.nprobe}
    else:
        params = {}
    return {"metric_type": METRIC, "params": params}


def _quote(value: str) -> str:
    """A Milvus string literal: backslashes and double quotes escaped."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expr(filters: Filters | None) -> str:
    """The Milvus scalar filter for gunmatch's search filters ('' when there are none)."""
    f = filters or Filters()
    parts = []
    if f.category:
        parts.append(f"category == {_quote(normalize_category(f.category))}")
    if f.modality:
        parts.append(f"modality == {_quote(f.modality)}")
    if f.threat is not None:
        parts.append(f"threat == {'true' if f.threat else 'false'}")
    if f.label:
        parts.append(f"label == {_quote(f.label)}")
    return " and ".join(parts)
