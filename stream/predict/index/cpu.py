"""CPU indexes: scikit-learn's exact brute force, FAISS (IVF-Flat, IVF-PQ with refinement, HNSW)
and hnswlib (the HNSW form of a CAGRA graph written by cuVS)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from stream.backend import to_host_numpy
from stream.predict.index.base import (
    ExactSearchSettings,
    IndexKind,
    IndexLibraryMissingError,
    IndexSpec,
    Params,
    default_n_lists,
    default_pq_bits,
    default_pq_dim,
    ef_grid,
    ivf_search_grid,
    minkowski_power,
)

FAISS_FILE = "index.faiss"
HNSW_FILE = "index.hnsw"
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 100


class SklearnBrute(ExactSearchSettings):
    """Exact search, scikit-learn's brute force: the reference every other index is tuned against.

    FAISS's flat index is exact too, but orders tied neighbours differently (equal distances,
    e.g. duplicate rows), which can change the k-th neighbour and so a vote; brute force stays
    scikit-learn's so that ``brute`` models predict as they always did.
    """

    def __init__(self, features: np.ndarray, metric: str, p: float | None = None) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.spec = IndexSpec("brute")
        self._search = NearestNeighbors(algorithm="brute", metric=metric, **minkowski_power(metric, p)).fit(features)

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        return self._search.kneighbors(to_host_numpy(rows), n_neighbors=k)


class FaissIndex:
    """A FAISS index over L2; distances are the square roots of FAISS's squared ones."""

    def __init__(self, spec: IndexSpec, index: Any) -> None:
        self.spec = spec
        self._index = index

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        queries = np.ascontiguousarray(to_host_numpy(rows), dtype=np.float32)
        squared, indices = self._index.search(queries, k)
        return _true_distances(squared, indices)

    def search_grid(self, k: int) -> list[Params]:
        if self.spec.kind == "hnsw":
            return [{"ef": ef} for ef in ef_grid(k)]
        return ivf_search_grid(self.spec.kind, self.spec.build["n_lists"])

    def set_search(self, params: Params) -> None:
        import faiss

        self.spec = IndexSpec(self.spec.kind, self.spec.build, {**self.spec.search, **params})
        if "ef" in params:
            self._index.hnsw.efSearch = params["ef"]
        if "refine_ratio" in params:
            self._index.k_factor = float(params["refine_ratio"])
        if "n_probes" in params:
            faiss.extract_index_ivf(self._index).nprobe = params["n_probes"]

    def files(self) -> dict[str, bytes]:
        import faiss

        return {FAISS_FILE: faiss.serialize_index(self._index).tobytes()}


class HnswlibIndex:
    """A CAGRA graph in hnswlib's format (cuVS ``hnsw.from_cagra`` with a CPU hierarchy, saved)."""

    def __init__(self, spec: IndexSpec, payload: bytes, n_features: int) -> None:
        try:
            import hnswlib
        except ImportError as exc:
            raise IndexLibraryMissingError(
                "a CAGRA model is served on a CPU by hnswlib: pip install 'knnstream[cagra-on-cpu]'"
            ) from exc

        self.spec = spec
        self._payload = payload
        self._index = hnswlib.Index(space="l2", dim=n_features)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, HNSW_FILE)
            with open(path, "wb") as file:
                file.write(payload)
            self._index.load_index(path)

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        queries = np.ascontiguousarray(to_host_numpy(rows), dtype=np.float32)
        labels, squared = self._index.knn_query(queries, k=k)
        return _true_distances(squared, labels.astype(np.int64))

    def search_grid(self, k: int) -> list[Params]:
        return [{"ef": ef} for ef in ef_grid(k)]

    def set_search(self, params: Params) -> None:
        self.spec = IndexSpec(self.spec.kind, self.spec.build, {**self.spec.search, **params})
        if "ef" in params:  # a CAGRA model's own search setting (itopk) means nothing here
            self._index.set_ef(params["ef"])

    def files(self) -> dict[str, bytes]:
        return {HNSW_FILE: self._payload}


def build_faiss(kind: IndexKind, features: np.ndarray, build: Params | None = None) -> FaissIndex:
    """A FAISS index of ``kind`` over ``features``, with ``build`` or the defaults for their size."""
    import faiss

    rows = np.ascontiguousarray(features, dtype=np.float32)
    params = {**default_build_params(kind, rows.shape[0], rows.shape[1]), **(build or {})}
    dim = rows.shape[1]
    index: Any
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"])
        index.hnsw.efConstruction = params["ef_construction"]
    elif kind == "ivf-flat":
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, params["n_lists"])
    else:
        base = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, params["n_lists"], params["pq_dim"], params["pq_bits"])
        index = faiss.IndexRefineFlat(base)
    index.train(rows)
    index.add(rows)
    built = FaissIndex(IndexSpec(kind, params), index)
    built.set_search(built.search_grid(1)[0])
    return built


def load_faiss(spec: IndexSpec, payload: bytes) -> FaissIndex:
    import faiss

    index = FaissIndex(spec, faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8)))
    if spec.search:
        index.set_search(spec.search)
    return index


def default_build_params(kind: IndexKind, rows: int, n_features: int) -> Params:
    if kind == "hnsw":
        return {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    if kind == "cagra":
        return {"graph_degree": 32, "intermediate_graph_degree": 64}
    if kind == "ivf-pq":
        return {
            "n_lists": default_n_lists(rows),
            "pq_dim": default_pq_dim(n_features),
            "pq_bits": default_pq_bits(rows),
        }
    return {"n_lists": default_n_lists(rows)}


def _true_distances(squared: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances from squared ones; a slot the index left empty (-1, fewer than k rows
    in the lists probed) takes the nearest neighbour found, so every row number is a real row."""
    missing = indices < 0
    if missing.any():
        indices = np.where(missing, indices[:, :1], indices)
        squared = np.where(missing, squared[:, :1], squared)
    return np.sqrt(np.maximum(squared, 0)), indices.astype(np.int64)
