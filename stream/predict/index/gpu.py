"""GPU indexes: cuML's exact brute force and cuVS's IVF-Flat, IVF-PQ (with refinement) and CAGRA.

cuVS searches squared L2 (``sqeuclidean``); distances are turned into euclidean ones here.
Every import of a GPU library is inside a function, so this module loads on a CPU host.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from stream.predict.index.base import (
    ExactSearchSettings,
    IndexKind,
    IndexSpec,
    Params,
    UnsupportedIndexError,
    ivf_search_grid,
    minkowski_power,
)
from stream.predict.index.cpu import HNSW_FILE, default_build_params

CUVS_FILE = "index.cuvs"
ITOPK_SIZES = (16, 32, 64, 128, 256, 512)
HNSW_EF_CONSTRUCTION = 200
# The HNSW form's upper layers are built on the GPU (the same hnswlib file as a CPU-built hierarchy,
# in a fraction of the time at millions of rows); "cpu" where a cuVS release lacks the GPU build.
HNSW_HIERARCHIES = ("gpu", "cpu")


class CumlBrute(ExactSearchSettings):
    """Exact search on the GPU, cuML's brute force (cuVS's fused kernel underneath)."""

    def __init__(self, features: np.ndarray, metric: str, p: float | None = None) -> None:
        import cupy
        from cuml.neighbors import NearestNeighbors

        self.spec = IndexSpec("brute")
        self._search = NearestNeighbors(algorithm="brute", metric=metric, **minkowski_power(metric, p)).fit(
            cupy.asarray(features)
        )

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        return self._search.kneighbors(rows, n_neighbors=k)


class CuvsIndex:
    """A cuVS IVF-Flat, IVF-PQ or CAGRA index; IVF-PQ candidates are refined on the rows kept on
    the device (``refine_ratio`` times k candidates, re-ranked by exact distance)."""

    def __init__(self, spec: IndexSpec, index: Any, dataset: Any) -> None:
        self.spec = spec
        self._index = index
        self._dataset = dataset  # the rows on the device, for IVF-PQ's refinement
        self._files: dict[str, bytes] | None = None  # written once: the CAGRA graph's HNSW form costs seconds

    def kneighbors(self, rows: Any, k: int) -> tuple[Any, Any]:
        import cupy

        queries = cupy.ascontiguousarray(cupy.asarray(rows, dtype=cupy.float32))
        squared, indices = self._search(queries, k)
        squared, indices = cupy.asarray(squared), cupy.asarray(indices).astype(cupy.int64)
        return cupy.sqrt(cupy.maximum(squared, 0)), indices

    def _search(self, queries: Any, k: int) -> tuple[Any, Any]:
        from cuvs.neighbors import cagra, ivf_flat, ivf_pq, refine

        search = self.spec.search
        if self.spec.kind == "cagra":
            params = cagra.SearchParams(itopk_size=max(search["itopk"], k))
            return cagra.search(params, self._index, queries, k)
        if self.spec.kind == "ivf-flat":
            return ivf_flat.search(ivf_flat.SearchParams(n_probes=search["n_probes"]), self._index, queries, k)
        candidates = k * search["refine_ratio"]
        _, found = ivf_pq.search(ivf_pq.SearchParams(n_probes=search["n_probes"]), self._index, queries, candidates)
        return refine(self._dataset, queries, found, k=k, metric="sqeuclidean")

    def search_grid(self, k: int) -> list[Params]:
        if self.spec.kind == "cagra":
            return [{"itopk": size} for size in ITOPK_SIZES if size >= k] or [{"itopk": k}]
        return ivf_search_grid(self.spec.kind, self.spec.build["n_lists"])

    def set_search(self, params: Params) -> None:
        self.spec = IndexSpec(self.spec.kind, self.spec.build, {**self.spec.search, **params})

    def files(self) -> dict[str, bytes]:
        """The index's files, written on the first call."""
        if self._files is None:
            self._files = self._written_files()
        return self._files

    def _written_files(self) -> dict[str, bytes]:
        """The cuVS IVF index (``save``); for CAGRA its HNSW form, which a CPU worker serves.

        A CAGRA graph is not stored in cuVS's own format: cuVS calls that serialisation experimental,
        with no promise that another release reads it (and ``cagra.load``'s arguments differ between
        releases), so a GPU worker builds the graph again from the stored rows with the stored
        parameters, in seconds even at ten million rows.
        """
        from cuvs.neighbors import hnsw, ivf_flat, ivf_pq

        if self.spec.kind == "cagra":
            form = hnsw.from_cagra(_hnsw_params(hnsw), self._index)
            return {HNSW_FILE: _saved(lambda path: hnsw.save(path, form))}
        module = {"ivf-flat": ivf_flat, "ivf-pq": ivf_pq}[self.spec.kind]
        return {CUVS_FILE: _saved(lambda path: module.save(path, self._index))}


def build_cuvs(kind: IndexKind, features: np.ndarray, build: Params | None = None) -> CuvsIndex:
    import cupy
    from cuvs.neighbors import cagra, ivf_flat, ivf_pq

    dataset = cupy.asarray(np.ascontiguousarray(features, dtype=np.float32))
    params = {**default_build_params(kind, dataset.shape[0], dataset.shape[1]), **(build or {})}
    if kind == "ivf-pq" and params["pq_dim"] * params["pq_bits"] % 8:
        params["pq_bits"] = 8  # cuVS packs codes in bytes: pq_dim x pq_bits must be a multiple of 8
    if kind == "cagra":
        index_params = cagra.IndexParams(
            metric="sqeuclidean",
            graph_degree=params["graph_degree"],
            intermediate_graph_degree=params["intermediate_graph_degree"],
        )
        index = cagra.build(index_params, dataset)
    elif kind == "ivf-flat":
        index = ivf_flat.build(ivf_flat.IndexParams(n_lists=params["n_lists"], metric="sqeuclidean"), dataset)
    else:
        pq_params = ivf_pq.IndexParams(
            n_lists=params["n_lists"], metric="sqeuclidean", pq_dim=params["pq_dim"], pq_bits=params["pq_bits"]
        )
        index = ivf_pq.build(pq_params, dataset)
    built = CuvsIndex(IndexSpec(kind, params), index, dataset)
    built.set_search(built.search_grid(1)[0])
    return built


def load_cuvs(spec: IndexSpec, payload: bytes, features: np.ndarray) -> CuvsIndex:
    import cupy
    from cuvs.neighbors import ivf_flat, ivf_pq

    module = {"ivf-flat": ivf_flat, "ivf-pq": ivf_pq}[spec.kind]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, CUVS_FILE)
        with open(path, "wb") as file:
            file.write(payload)
        index = module.load(path)
    dataset = cupy.asarray(features) if spec.kind == "ivf-pq" else None
    return CuvsIndex(spec, index, dataset)


def _hnsw_params(hnsw: Any) -> Any:
    for hierarchy in HNSW_HIERARCHIES:
        try:
            return hnsw.IndexParams(hierarchy=hierarchy, ef_construction=HNSW_EF_CONSTRUCTION)
        except ValueError:  # this cuVS release does not build that hierarchy
            continue
    raise UnsupportedIndexError("this cuVS release cannot write a CAGRA graph's HNSW form")


def _saved(save: Callable[[str], None]) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "index.bin")
        save(path)
        with open(path, "rb") as file:
            return file.read()
