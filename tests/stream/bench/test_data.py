"""The benchmark's rows: generated blobs and correlated rows, a user's table, held-out queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stream.bench.data import bench_data, blobs, correlated, read_table, split
from stream.errors import ConfigurationError
from stream.settings import BenchSettings


def test_correlated_rows_vary_along_eight_directions() -> None:
    features, labels = correlated(5_000, 32, seed=0)
    assert features.shape == (5_000, 32) and features.dtype == np.float32
    spread = np.linalg.svd(features - features.mean(axis=0), compute_uv=False) ** 2
    assert spread[:8].sum() / spread.sum() > 0.98  # 8 latent directions hold nearly all the variance
    assert set(np.unique(labels)) == set(range(10))
    blob_features, _ = blobs(5_000, 32, seed=0)
    blob_spread = np.linalg.svd(blob_features - blob_features.mean(axis=0), compute_uv=False) ** 2
    assert blob_spread[:8].sum() / blob_spread.sum() < 0.7  # noise in every direction


def test_generated_data_hold_out_their_queries() -> None:
    data = bench_data(BenchSettings(index_rows=3_000, features=8, data_kind="correlated"))
    assert data.features.shape == (3_000, 8) and data.queries.shape == (300, 8)
    assert len(data.labels) == 3_000 and len(data.query_labels) == 300


def test_a_table_is_split_into_index_rows_and_held_out_queries(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(1_000.0), "b": np.arange(1_000.0) * 2, "name": "x", "y": np.arange(1_000) % 3})
    frame.to_csv(tmp_path / "table.csv", index=False)
    data = bench_data(BenchSettings(data=str(tmp_path / "table.csv"), label="y"))
    assert data.features.shape == (900, 2) and data.queries.shape == (100, 2)  # the text column is no feature
    together = np.concatenate([data.features[:, 0], data.queries[:, 0]])
    np.testing.assert_array_equal(np.sort(together), np.arange(1_000.0))  # every row once, none in both
    assert split(data.features, data.labels, seed=1).queries.shape == (90, 2)


def test_a_table_without_its_label_is_refused(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ConfigurationError, match="--data needs --label"):
        read_table(str(tmp_path / "t.parquet"), None)
    with pytest.raises(ConfigurationError, match="label column 'y' not in"):
        read_table(str(tmp_path / "t.parquet"), "y")
