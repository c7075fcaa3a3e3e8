"""Which index each backend builds and loads, and how a stored index reaches the other backend.

A model's index files are written by the backend that trained it. On the other backend:
IVF-Flat and IVF-PQ are rebuilt from the stored rows with the stored build parameters (FAISS
and cuVS build the same structure), a CAGRA model is served on a CPU by its HNSW form (hnswlib,
written at train time), and an HNSW model (FAISS) is searched on the GPU host's CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stream.backend import Backend
from stream.predict.index.base import (
    IndexKind,
    IndexSpec,
    NeighbourIndex,
    NeighbourIndexError,
    Params,
    UnsupportedIndexError,
    check_metric,
)
from stream.predict.index.cpu import FAISS_FILE, HNSW_FILE, HnswlibIndex, SklearnBrute, build_faiss, load_faiss
from stream.predict.index.gpu import CUVS_FILE, CumlBrute, build_cuvs, load_cuvs

INDEX_FILES = (FAISS_FILE, CUVS_FILE, HNSW_FILE)


def exact_index(features: np.ndarray, metric: str, backend: Backend, p: float | None = None) -> NeighbourIndex:
    """Exact brute-force search: scikit-learn on a CPU, cuML on a GPU (``p``: minkowski's power)."""
    return CumlBrute(features, metric, p) if backend == "gpu" else SklearnBrute(features, metric, p)


def build_index(
    kind: IndexKind, features: np.ndarray, metric: str, backend: Backend, build: Params | None = None
) -> NeighbourIndex:
    """A new index of ``kind`` over ``features`` on ``backend`` (search parameters: the cheapest)."""
    check_metric(kind, metric)
    if kind == "brute":
        return exact_index(features, metric, backend)
    if backend == "gpu" and kind != "hnsw":
        return build_cuvs(kind, features, build)
    if kind == "cagra":
        raise UnsupportedIndexError(
            "index cagra is built on the GPU backend (cuVS); on a CPU use --index hnsw, ivf-flat or ivf-pq"
        )
    return build_faiss(kind, features, build)


def load_index(
    spec: IndexSpec, files: Mapping[str, bytes], features: np.ndarray, metric: str, backend: Backend
) -> NeighbourIndex:
    """The stored index of ``spec`` ready to search on ``backend``, with its stored search parameters."""
    check_metric(spec.kind, metric)
    if spec.kind == "brute":
        return exact_index(features, metric, backend)
    index = _load_or_rebuild(spec, files, features, backend)
    index.set_search(spec.search)
    return index


def _load_or_rebuild(
    spec: IndexSpec, files: Mapping[str, bytes], features: np.ndarray, backend: Backend
) -> NeighbourIndex:
    if spec.kind == "cagra":
        if backend == "gpu":
            return build_cuvs(spec.kind, features, spec.build)  # the graph is built again (CuvsIndex.files)
        return HnswlibIndex(spec, _required(files, HNSW_FILE, spec), features.shape[1])
    if spec.kind == "hnsw":
        return load_faiss(spec, _required(files, FAISS_FILE, spec))
    if backend == "gpu":
        return (
            load_cuvs(spec, files[CUVS_FILE], features)
            if CUVS_FILE in files
            else build_cuvs(spec.kind, features, spec.build)
        )
    return load_faiss(spec, files[FAISS_FILE]) if FAISS_FILE in files else build_faiss(spec.kind, features, spec.build)


def _required(files: Mapping[str, bytes], name: str, spec: IndexSpec) -> bytes:
    if name not in files:
        raise NeighbourIndexError(f"the model's {spec.kind} index has no file {name}; train it again")
    return files[name]


def stored_index(
    record: Mapping[str, object] | None,
    files: Mapping[str, bytes],
    features: np.ndarray,
    metric: str,
    backend: Backend,
    p: float | None = None,
) -> NeighbourIndex:
    """The index a manifest's ``index`` record describes (none: exact search, as before indexes;
    ``p``: minkowski's power, which only exact search takes)."""
    if not record or record.get("kind", "brute") == "brute":
        return exact_index(features, metric, backend, p)
    params = record.get("params", {})
    spec = IndexSpec.from_json(str(record["kind"]), params if isinstance(params, dict) else {})
    return load_index(spec, files, features, metric, backend)


def index_file_bytes(files: Mapping[str, bytes]) -> int:
    """Bytes of a version's index files: what its index adds to the rows in memory."""
    return sum(len(data) for name, data in files.items() if name in INDEX_FILES)
