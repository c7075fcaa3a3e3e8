"""CPU indexes against scikit-learn's exact search: recall, true distances, nearest first, their
files read back, a CAGRA model's HNSW form read by hnswlib, and the kinds a CPU cannot build."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from stream.bench.data import correlated
from stream.predict.index import IndexSpec, UnsupportedIndexError, build_index, exact_index, load_index
from stream.predict.index.base import IndexLibraryMissingError, NeighbourIndexError
from stream.predict.index.cpu import HNSW_FILE
from stream.train.tuning import recall_at_k

K = 5
# generous settings: each kind's recall at them is far above what these tests ask for
SETTINGS = {"ivf-flat": {"n_probes": 32}, "ivf-pq": {"n_probes": 32, "refine_ratio": 8}, "hnsw": {"ef": 128}}


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    features, _ = correlated(12_000, 16, seed=3)
    return features[1_000:], features[:1_000]


@pytest.fixture(scope="module")
def exact(rows: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    features, queries = rows
    return NearestNeighbors(n_neighbors=K, algorithm="brute").fit(features).kneighbors(queries)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq", "hnsw"])
def test_each_kind_finds_the_exact_neighbours_with_their_true_distances(
    kind: str, rows: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]
) -> None:
    features, queries = rows
    index = build_index(kind, features, "euclidean", "cpu")  # type: ignore[arg-type]
    index.set_search(SETTINGS[kind])
    distances, indices = index.kneighbors(queries, K)
    assert recall_at_k(indices, exact[1]) >= 0.99
    assert np.all(np.diff(distances, axis=1) >= 0)  # nearest first
    true = np.linalg.norm(features[indices] - queries[:, None, :], axis=2)
    np.testing.assert_allclose(distances, true, rtol=1e-3, atol=1e-3)  # euclidean, not squared
    same = indices[:, 0] == exact[1][:, 0]
    np.testing.assert_allclose(distances[same, 0], exact[0][same, 0], rtol=1e-3, atol=1e-3)


def test_the_cheapest_setting_finds_fewer_neighbours(rows: tuple[np.ndarray, np.ndarray], exact: tuple) -> None:
    features, queries = rows
    index = build_index("ivf-flat", features, "euclidean", "cpu")
    cheapest, widest = index.search_grid(K)[0], index.search_grid(K)[-1]
    index.set_search(cheapest)
    assert recall_at_k(index.kneighbors(queries, K)[1], exact[1]) < 0.9
    index.set_search(widest)  # every list probed: exhaustive
    assert recall_at_k(index.kneighbors(queries, K)[1], exact[1]) == 1.0


def test_brute_force_is_scikit_learns(rows: tuple[np.ndarray, np.ndarray], exact: tuple) -> None:
    features, queries = rows
    distances, indices = exact_index(features, "euclidean", "cpu").kneighbors(queries, K)
    np.testing.assert_array_equal(indices, exact[1])
    np.testing.assert_allclose(distances, exact[0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq", "hnsw"])
def test_stored_files_read_back_to_the_same_search(kind: str, rows: tuple[np.ndarray, np.ndarray]) -> None:
    features, queries = rows
    built = build_index(kind, features, "euclidean", "cpu")  # type: ignore[arg-type]
    built.set_search(SETTINGS[kind])
    files = built.files()
    assert set(files) == {"index.faiss"} and all(not data.startswith(b"\x80") for data in files.values())  # no pickle
    loaded = load_index(built.spec, files, features, "euclidean", "cpu")
    assert loaded.spec == built.spec
    for mine, theirs in zip(loaded.kneighbors(queries, K), built.kneighbors(queries, K), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_an_ivf_model_without_a_faiss_file_is_rebuilt_with_its_parameters(
    kind: str, rows: tuple[np.ndarray, np.ndarray], exact: tuple
) -> None:
    """As a model trained on the GPU (its cuVS file only) is served on a CPU."""
    features, queries = rows
    built = build_index(kind, features, "euclidean", "cpu")  # type: ignore[arg-type]
    built.set_search(SETTINGS[kind])
    rebuilt = load_index(built.spec, {"index.cuvs": b"a file only cuVS reads"}, features, "euclidean", "cpu")
    assert rebuilt.spec == built.spec
    recall = recall_at_k(built.kneighbors(queries, K)[1], exact[1])
    assert abs(recall_at_k(rebuilt.kneighbors(queries, K)[1], exact[1]) - recall) <= 0.01


def test_a_cagra_model_is_served_on_a_cpu_by_hnswlib(rows: tuple[np.ndarray, np.ndarray], exact: tuple) -> None:
    """The HNSW form cuVS writes (``hnsw.from_cagra`` with a CPU hierarchy, then ``hnsw.save``) is
    hnswlib's own file format; here hnswlib writes one itself."""
    hnswlib = pytest.importorskip("hnswlib")
    features, queries = rows
    graph = hnswlib.Index(space="l2", dim=features.shape[1])
    graph.init_index(max_elements=len(features), M=16, ef_construction=100, random_seed=1)
    graph.add_items(features, np.arange(len(features)))
    with tempfile.TemporaryDirectory() as directory:
        graph.save_index(os.path.join(directory, HNSW_FILE))
        with open(os.path.join(directory, HNSW_FILE), "rb") as file:
            payload = file.read()
    spec = IndexSpec("cagra", {"graph_degree": 32}, {"itopk": 32, "ef": 64})
    served = load_index(spec, {"index.cuvs": b"cuVS only", HNSW_FILE: payload}, features, "euclidean", "cpu")
    distances, indices = served.kneighbors(queries, K)
    assert recall_at_k(indices, exact[1]) >= 0.99
    np.testing.assert_allclose(distances, np.linalg.norm(features[indices] - queries[:, None, :], axis=2), rtol=1e-3)


def test_kinds_a_cpu_cannot_build_or_serve_are_refused_in_one_line(rows: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = rows
    with pytest.raises(UnsupportedIndexError, match="index cagra is built on the GPU backend"):
        build_index("cagra", features, "euclidean", "cpu")
    with pytest.raises(UnsupportedIndexError, match="euclidean metric only, not manhattan; use --index brute"):
        build_index("hnsw", features, "manhattan", "cpu")
    with pytest.raises(UnsupportedIndexError, match="unknown index kind 'annoy'"):
        IndexSpec.from_json("annoy", {})
    with pytest.raises(NeighbourIndexError, match=r"has no file index\.hnsw"):
        load_index(IndexSpec("cagra", {}, {"itopk": 32}), {"index.cuvs": b"x"}, features, "euclidean", "cpu")


def test_a_cagra_model_without_hnswlib_here_names_the_extra_that_serves_it(
    rows: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # an import of it fails, installed or not
    spec = IndexSpec("cagra", {"graph_degree": 32}, {"itopk": 32, "ef": 64})
    with pytest.raises(IndexLibraryMissingError, match=r"knnstream\[cagra-on-cpu\]"):
        load_index(spec, {"index.cuvs": b"cuVS only", HNSW_FILE: b"graph"}, rows[0], "euclidean", "cpu")
