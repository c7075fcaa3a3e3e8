"""Scoring raw feature records on the Dask worker: parse, predict, send back host results.

The driver sends a batch's values joined (one bytes object per worker), so parsing runs on the
workers (:mod:`stream.predict.parse`). A part with any record that is not clean comes back as
``None``; the driver then decodes the batch itself, record by record, and dead-letters what must be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stream.predict.parse import parse_part
from stream.predict.plugin import predict_on_worker, worker_plugin
from stream.settings import InputFormat
from stream.sink.encode import encode_values, prediction_headers
from stream.sink.workers import worker_producer


@dataclass(frozen=True)
class ScoredLines:
    """One part's results, in the order of its records: host ids, and what
    :func:`~stream.predict.plugin.predict_on_worker` returns."""

    ids: pa.Array
    predicted: Any  # a pandas frame of prediction and distance
    shadow: np.ndarray | None


def score_lines_on_worker(
    payload: bytes,
    keys: pa.Array,
    n_features: int,
    version: str,
    shadow_version: str | None = None,
    input_format: InputFormat = "json",
) -> ScoredLines | None:
    """Dask task: parse the records (one per key) and predict them with ``version`` (and the shadow)."""
    decoded = parse_part(input_format, payload, keys, n_features, worker_plugin(version).backend)
    if decoded is None:
        return None
    ids, matrix = decoded
    predicted, shadow = predict_on_worker(matrix, version, shadow_version)
    return ScoredLines(ids, predicted, shadow)


def score_and_produce_on_worker(
    payload: bytes,
    keys: pa.Array,
    n_features: int,
    version: str,
    shadow_version: str | None,
    output_topic: str,
    input_format: InputFormat = "json",
) -> ScoredLines | None:
    """Dask task: :func:`score_lines_on_worker`, then produce one prediction per record (keyed
    like its input record: ``keys`` is an Arrow binary array) with this worker's producer, and
    return once the broker has them.

    ``None`` (nothing produced) when a record is not clean. The returned results carry no ids:
    only the predictions travel back, for the driver's shadow comparison.
    """
    scored = score_lines_on_worker(payload, keys, n_features, version, shadow_version, input_format)
    if scored is None:
        return None
    predicted = scored.predicted
    values = encode_values(scored.ids, predicted["prediction"].to_numpy(), predicted["distance"].to_numpy(), version)
    worker_producer().deliver(output_topic, keys.to_pylist(), values, prediction_headers(version))
    return ScoredLines(pa.array([], pa.string()), predicted, scored.shadow)
