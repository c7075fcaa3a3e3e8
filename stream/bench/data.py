"""The benchmark's rows: generated (``blobs`` or ``correlated``) or a user's table, split into the
model's index and held-out queries.

``blobs`` are independent Gaussian noise around 10 centres, the hardest case for approximate
search; ``correlated`` rows vary along 8 latent directions plus a little noise, as real feature
sets tend to. The queries are rows of the same kind that the index does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stream.errors import ConfigurationError
from stream.settings import BenchSettings

LATENT_DIRECTIONS = 8
CLASSES = 10
MAX_QUERIES = 10_000


@dataclass(frozen=True)
class BenchData:
    features: np.ndarray  # the index's rows, float32
    labels: np.ndarray  # their class labels
    queries: np.ndarray  # held-out rows, float32
    query_labels: np.ndarray


def bench_data(settings: BenchSettings) -> BenchData:
    if settings.data:
        return split(*read_table(settings.data, settings.label), seed=0)
    queries = min(MAX_QUERIES, max(1, settings.index_rows // 10))
    generate = correlated if settings.data_kind == "correlated" else blobs
    features, labels = generate(settings.index_rows + queries, settings.features, seed=0)
    return BenchData(features[queries:], labels[queries:], features[:queries], labels[:queries])


def correlated(rows: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows along 8 latent directions (plus noise of a tenth of their spread); labels from the
    first latent coordinate, in 10 equal bins."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, LATENT_DIRECTIONS))
    mixing = rng.normal(size=(LATENT_DIRECTIONS, n_features))
    features = latent @ mixing + 0.1 * rng.normal(size=(rows, n_features))
    edges = np.quantile(latent[:, 0], np.linspace(0, 1, CLASSES + 1)[1:-1])
    return features.astype(np.float32), np.digitize(latent[:, 0], edges)


def blobs(rows: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit Gaussian noise around 10 centres drawn from N(0, 1); the label is the centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, n_features))
    labels = rng.integers(0, CLASSES, rows)
    return (centres[labels] + rng.normal(size=(rows, n_features))).astype(np.float32), labels


def read_table(path: str, label: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A Parquet or CSV table's numeric columns but ``label`` as features, and its ``label``."""
    if not label:
        raise ConfigurationError("--data needs --label: the column of the table's labels")
    frame = pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
    if label not in frame.columns:
        raise ConfigurationError(f"label column {label!r} not in {path}; its columns: {list(frame.columns)}")
    frame = frame.dropna()
    numeric = [name for name in frame.select_dtypes("number").columns if name != label]
    if not numeric or len(frame) < 2:
        raise ConfigurationError(f"{path} needs two rows or more and a numeric feature column besides {label!r}")
    return frame[numeric].to_numpy(np.float32), frame[label].to_numpy()


def split(features: np.ndarray, labels: np.ndarray, seed: int) -> BenchData:
    """A held-out sample (a tenth, at most 10,000 rows) as the queries, the rest as the index."""
    order = np.random.default_rng(seed).permutation(len(features))
    queries = min(MAX_QUERIES, max(1, len(features) // 10))
    held, kept = order[:queries], order[queries:]
    return BenchData(features[kept], labels[kept], features[held], labels[held])
