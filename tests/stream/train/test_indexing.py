"""Training with an approximate index (CPU; dask-cuda and cuVS with ``-m gpu``): the manifest's
index record, the files stored and verified, recall where the model is served, and bad input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

from model_store import ChecksumMismatchError, ModelStore
from stream.backend import Backend
from stream.cli.main import main
from stream.predict.index import stored_index
from stream.predict.model import MODEL_FILE, KnnIndex
from stream.settings import TrainSettings
from stream.train.indexing import CPU_HNSW_FROM_ROWS, CROSSOVER_ROWS, choose_kind
from stream.train.job import train
from stream.train.tuning import recall_at_k
from tests.helpers import blobs

ROWS, N_FEATURES, FRESH = 25_000, 16, 2_000
KINDS = [("ivf-flat", "cpu"), ("hnsw", "cpu"), pytest.param("cagra", "gpu", marks=pytest.mark.gpu)]
KINDS += [pytest.param(kind, "gpu", marks=pytest.mark.gpu) for kind in ("ivf-flat", "ivf-pq")]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Correlated rows in a Parquet file, and fresh rows of the same kind the model never saw."""
    from stream.bench.data import correlated

    features, labels = correlated(ROWS + FRESH, N_FEATURES, seed=7)
    frame = pd.DataFrame(features[FRESH:], columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["label"] = labels[FRESH:]
    path = tmp_path_factory.mktemp("history") / "correlated.parquet"
    frame.to_parquet(path)
    return path, features[:FRESH]


def _settings(data: Path, store: str, backend: Backend, **overrides: object) -> TrainSettings:
    values: dict[str, object] = {
        "data": str(data), "label": "label", "store": store, "name": "c", "backend": backend, "dask_workers": 1,
    }  # fmt: skip
    return TrainSettings(**(values | overrides))


@pytest.mark.parametrize(("kind", "backend"), KINDS)
def test_an_index_is_tuned_recorded_stored_and_served_at_its_recall_on_both_backends(
    kind: str, backend: Backend, history: tuple[Path, np.ndarray], tmp_store: str
) -> None:
    data, fresh = history
    manifest = train(_settings(data, tmp_store, backend, index=kind, min_recall=0.99))
    record = manifest.extra["index"]
    assert record["kind"] == kind and record["built_on"] == backend
    assert record["recall"] >= 0.985 and record["label_agreement"] >= 0.98
    assert set(record["params"]) == {"build", "search"} and record["params"]["search"]
    index_files = set(manifest.files) - {MODEL_FILE}
    assert index_files and all(len(manifest.files[name]) == 64 for name in index_files)  # sha256 of each

    loaded = ModelStore(tmp_store).load(f"c:{manifest.version}")
    model = KnnIndex.from_npz(loaded.files[MODEL_FILE])
    exact = NearestNeighbors(n_neighbors=model.k, algorithm="brute").fit(model.features).kneighbors(fresh)[1]
    for served_on in ("cpu", "gpu") if backend == "gpu" else ("cpu",):
        if kind == "cagra" and served_on == "cpu" and importlib.util.find_spec("hnswlib") is None:
            assert "cpu_recall" not in record  # its HNSW form was not tuned here
            continue
        search = stored_index(record, loaded.files, model.features, model.metric, served_on)  # type: ignore[arg-type]
        _, found = search.kneighbors(fresh, model.k)
        figure = record["cpu_recall"] if kind == "cagra" and served_on == "cpu" else record["recall"]
        assert abs(recall_at_k(found, exact) - figure) <= 0.01


def test_an_ivf_model_served_where_its_file_cannot_be_read_is_rebuilt_at_its_recall(
    history: tuple[Path, np.ndarray], tmp_store: str
) -> None:
    """A CPU worker given a GPU-trained IVF model rebuilds it from the stored rows and parameters."""
    data, fresh = history
    manifest = train(_settings(data, tmp_store, "cpu", index="ivf-flat"))
    files = ModelStore(tmp_store).load(f"c:{manifest.version}").files
    model = KnnIndex.from_npz(files[MODEL_FILE])
    as_if_from_a_gpu = {MODEL_FILE: files[MODEL_FILE], "index.cuvs": b"read by cuVS only"}
    rebuilt = stored_index(manifest.extra["index"], as_if_from_a_gpu, model.features, model.metric, "cpu")
    exact = NearestNeighbors(n_neighbors=model.k, algorithm="brute").fit(model.features).kneighbors(fresh)[1]
    assert abs(recall_at_k(rebuilt.kneighbors(fresh, model.k)[1], exact) - manifest.extra["index"]["recall"]) <= 0.01


def test_regression_records_the_r2_difference_to_exact_search(tmp_path: Path, tmp_store: str) -> None:
    features, labels = blobs(12_000, seed=5)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["price"] = labels * 10.0 + features[:, 0]
    frame.to_parquet(tmp_path / "prices.parquet")
    settings = _settings(tmp_path / "prices.parquet", tmp_store, "cpu", label="price", task="regression", index="hnsw")
    record = train(settings).extra["index"]
    assert "label_agreement" not in record and abs(record["r2_difference"]) < 0.01


def test_a_corrupted_index_file_is_refused_before_it_is_read(history: tuple[Path, np.ndarray], tmp_store: str) -> None:
    data, _ = history
    manifest = train(_settings(data, tmp_store, "cpu", index="ivf-flat"))
    (stored,) = Path(tmp_store).rglob(f"*{manifest.version}*/index.faiss")
    payload = bytearray(stored.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    stored.write_bytes(bytes(payload))
    with pytest.raises(ChecksumMismatchError, match=r"index\.faiss"):
        ModelStore(tmp_store).load(f"c:{manifest.version}")


def test_auto_is_brute_force_below_the_crossover_and_for_exact_recall() -> None:
    rows = CROSSOVER_ROWS["cpu"]
    assert choose_kind("auto", rows - 1, "cpu", 0.99, "euclidean") == "brute"
    assert choose_kind("auto", rows, "cpu", 0.99, "euclidean") == "ivf-flat"
    assert choose_kind("auto", CPU_HNSW_FROM_ROWS, "cpu", 0.99, "euclidean") == "hnsw"
    assert choose_kind("auto", rows, "cpu", 1.0, "euclidean") == "brute"
    assert choose_kind("auto", rows, "cpu", 0.99, "manhattan") == "brute"
    assert choose_kind("auto", 10 * CROSSOVER_ROWS["gpu"], "gpu", 0.99, "euclidean") == "cagra"
    assert choose_kind("hnsw", 10, "cpu", 0.99, "euclidean") == "hnsw"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--index", "cagra"], "index cagra is built on the GPU backend (cuVS); on a CPU use --index hnsw"),
        (["--min-recall", "0"], "--min-recall: Input should be greater than 0"),
        (["--min-recall", "1.5"], "--min-recall: Input should be less than or equal to 1"),
        (["--index", "ivf-flat", "--metric", "cosine"], "euclidean metric only, not cosine"),
    ],
)
def test_bad_index_flags_are_one_line_errors(
    flags: list[str], message: str, tmp_path: Path, tmp_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    features, labels = blobs(600, seed=1)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame["label"] = labels
    frame.to_parquet(tmp_path / "small.parquet")
    args = ["train", "--data", str(tmp_path / "small.parquet"), "--label", "label", "--store", tmp_store]
    code = main([*args, "--name", "small", "--backend", "cpu", "--dask-workers", "1", *flags])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert error.startswith("knnstream train: error: ") and message in error


@pytest.mark.gpu
def test_a_cagra_model_trained_where_hnswlib_is_missing_is_published_untuned_for_cpus(
    history: tuple[Path, np.ndarray], tmp_store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)
    manifest = train(_settings(history[0], tmp_store, "gpu", index="cagra", min_recall=0.99))
    record = manifest.extra["index"]
    assert record["kind"] == "cagra" and record["recall"] >= 0.985 and "cpu_recall" not in record
    assert "HNSW form is not tuned for CPU workers" in caplog.text
