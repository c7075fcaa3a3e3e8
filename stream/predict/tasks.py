"""Dask tasks that score a part of a batch on the worker that holds the model.

The driver sends a part's values joined (one bytes object per worker), so parsing runs on the
workers (:mod:`stream.records.parse`). A part with any record that is not clean comes back as
``None``; the driver then decodes the batch itself, record by record, and dead-letters what
must be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stream.predict.plugin import predict_on_worker, worker_plugin
from stream.records.parse import parse_part
from stream.settings import InputFormat


@dataclass(frozen=True)
class ScoredLines:
    """One part's results, in the order of its records: host ids, and what
    :func:`~stream.predict.plugin.predict_on_worker` returns."""

    ids: pa.Array
    predicted: Any  # a pandas frame of prediction and distance (and probabilities, when asked)
    shadow: np.ndarray | None
    seconds: tuple[tuple[str, float], ...] = ()  # each stage's time on the worker: decode, predict, ...


def score_lines_on_worker(
    payload: bytes,
    keys: pa.Array,
    n_features: int,
    version: str,
    shadow_version: str | None = None,
    input_format: InputFormat = "json",
    probabilities: bool = False,
) -> ScoredLines | None:
    """Dask task: parse the records (one per key) and predict them with ``version`` (and the shadow)."""
    started = time.perf_counter()
    decoded = parse_part(input_format, payload, keys, n_features, worker_plugin(version).backend)
    if decoded is None:
        return None
    parsed = time.perf_counter()
    ids, matrix = decoded
    predicted, shadow = predict_on_worker(matrix, version, shadow_version, probabilities)
    return ScoredLines(
        ids, predicted, shadow, (("decode", parsed - started), ("predict", time.perf_counter() - parsed))
    )
