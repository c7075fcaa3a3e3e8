"""cuVS indexes on a GPU (``-m gpu``): built, searched against scikit-learn's exact neighbours,
saved and loaded again, CPU-built IVF models rebuilt on the GPU, and a CAGRA graph's HNSW form
served on the CPU by hnswlib."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from stream.backend import to_host_numpy
from stream.bench.data import correlated
from stream.predict.index import build_index, exact_index, load_index
from stream.train.tuning import recall_at_k

pytestmark = pytest.mark.gpu
K = 5
SETTINGS = {
    "ivf-flat": {"n_probes": 32},
    "ivf-pq": {"n_probes": 32, "refine_ratio": 8},
    "cagra": {"itopk": 128},
    "hnsw": {"ef": 128},
}


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    features, _ = correlated(51_000, 32, seed=4)
    return features[1_000:], features[:1_000]


@pytest.fixture(scope="module")
def exact(rows: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    features, queries = rows
    return NearestNeighbors(n_neighbors=K, algorithm="brute").fit(features).kneighbors(queries)  # type: ignore[no-any-return]


def _searched(index: object, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cupy

    distances, indices = index.kneighbors(cupy.asarray(queries), K)  # type: ignore[attr-defined]
    return to_host_numpy(distances), to_host_numpy(indices)


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq", "cagra", "hnsw"])
def test_each_cuvs_kind_finds_the_exact_neighbours_with_their_true_distances(
    kind: str, rows: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]
) -> None:
    features, queries = rows
    index = build_index(kind, features, "euclidean", "gpu")  # type: ignore[arg-type]
    index.set_search(SETTINGS[kind])
    distances, indices = _searched(index, queries)
    assert indices.dtype == np.int64
    assert recall_at_k(indices, exact[1]) >= 0.99
    assert np.all(np.diff(distances, axis=1) >= -1e-5)  # nearest first
    true = np.linalg.norm(features[indices] - queries[:, None, :], axis=2)
    np.testing.assert_allclose(distances, true, rtol=1e-3, atol=1e-3)


def test_gpu_brute_force_agrees_with_scikit_learn(rows: tuple[np.ndarray, np.ndarray], exact: tuple) -> None:
    features, queries = rows
    distances, indices = _searched(exact_index(features, "euclidean", "gpu"), queries)
    assert recall_at_k(indices, exact[1]) >= 0.999
    np.testing.assert_allclose(distances[:, 0], exact[0][:, 0], rtol=1e-3, atol=1e-3)


def test_a_cagra_model_is_built_again_on_the_gpu_within_a_hundredth_of_its_recall(
    rows: tuple[np.ndarray, np.ndarray], exact: tuple
) -> None:
    features, queries = rows
    built = build_index("cagra", features, "euclidean", "gpu")
    built.set_search(SETTINGS["cagra"])
    files = built.files()
    assert "index.cuvs" not in files and "index.hnsw" in files
    loaded = load_index(built.spec, files, features, "euclidean", "gpu")
    recall_built = recall_at_k(_searched(built, queries)[1], exact[1])
    assert abs(recall_at_k(_searched(loaded, queries)[1], exact[1]) - recall_built) <= 0.01


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_saved_cuvs_indexes_load_to_the_same_search(kind: str, rows: tuple[np.ndarray, np.ndarray]) -> None:
    features, queries = rows
    built = build_index(kind, features, "euclidean", "gpu")  # type: ignore[arg-type]
    built.set_search(SETTINGS[kind])
    files = built.files()
    assert "index.cuvs" in files
    loaded = load_index(built.spec, files, features, "euclidean", "gpu")
    np.testing.assert_array_equal(_searched(loaded, queries)[1], _searched(built, queries)[1])


def test_cagra_writes_an_hnsw_form_that_hnswlib_serves_on_the_cpu(
    rows: tuple[np.ndarray, np.ndarray], exact: tuple
) -> None:
    pytest.importorskip("hnswlib", reason="the cagra-on-cpu extra serves the HNSW form (it needs a compiler)")
    features, queries = rows
    built = build_index("cagra", features, "euclidean", "gpu")
    built.set_search({**SETTINGS["cagra"], "ef": 128})
    files = built.files()
    assert "index.hnsw" in files
    on_cpu = load_index(built.spec, files, features, "euclidean", "cpu")
    distances, indices = on_cpu.kneighbors(queries, K)
    assert recall_at_k(indices, exact[1]) >= 0.98
    np.testing.assert_allclose(distances, np.linalg.norm(features[indices] - queries[:, None, :], axis=2), rtol=1e-3)


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_cpu_built_ivf_models_are_rebuilt_on_the_gpu_within_a_hundredth_of_their_recall(
    kind: str, rows: tuple[np.ndarray, np.ndarray], exact: tuple
) -> None:
    features, queries = rows
    on_cpu = build_index(kind, features, "euclidean", "cpu")  # type: ignore[arg-type]
    on_cpu.set_search(SETTINGS[kind])
    on_gpu = load_index(on_cpu.spec, on_cpu.files(), features, "euclidean", "gpu")
    cpu_recall = recall_at_k(on_cpu.kneighbors(queries, K)[1], exact[1])
    assert abs(recall_at_k(_searched(on_gpu, queries)[1], exact[1]) - cpu_recall) <= 0.01
