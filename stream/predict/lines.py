"""Scoring raw feature records on the Dask worker: parse, predict, send back host results.

The driver sends a batch's values joined (one bytes object per worker), so parsing runs on the
workers: JSON lines with cuDF's JSON reader on a GPU worker, with Arrow's on a CPU one; float32
values need no parsing (:mod:`stream.source.formats`). A part with any record that is not clean
comes back as ``None``; the driver then decodes the batch itself, record by record, and
dead-letters what must be.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stream.backend import Backend, get_array_pkg, get_df_pkg
from stream.predict.plugin import predict_on_worker, worker_plugin
from stream.settings import InputFormat
from stream.sink.encode import encode_values, prediction_headers
from stream.sink.workers import worker_producer
from stream.source.decode import FLOAT32_MAX, decode_lines
from stream.source.formats import parse_float32


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


def parse_part(
    input_format: InputFormat, payload: bytes, keys: pa.Array, n_features: int, backend: Backend
) -> tuple[pa.Array, Any] | None:
    """Ids (host Arrow strings) and a float32 feature matrix of the backend's array type, of the
    joined values of a part (:func:`stream.source.formats.joined`); ``None`` when not clean."""
    if input_format == "json":
        return parse_lines(payload, len(keys), n_features, backend)
    parsed = parse_float32(payload, keys, n_features)
    if parsed is None or backend == "cpu":
        return parsed
    ids, matrix = parsed
    return ids, get_array_pkg("gpu").asarray(matrix)  # the one copy to the device


def parse_lines(payload: bytes, n_rows: int, n_features: int, backend: Backend) -> tuple[pa.Array, Any] | None:
    """Ids (host Arrow strings) and a float32 feature matrix of the backend's array type."""
    if backend == "gpu":
        return _parse_lines_gpu(payload, n_rows, n_features)
    return decode_lines(payload, n_rows, n_features)


def _parse_lines_gpu(payload: bytes, n_rows: int, n_features: int) -> tuple[pa.Array, Any] | None:
    """cuDF's JSON reader; the same checks as :func:`stream.source.decode.decode_lines`.

    Strings are read with their quotes (``keep_quotes``): cuDF turns a column of strings mixed
    with numbers into strings, and only the quotes tell that ``"id": 5`` was not a string.
    """
    cudf, cupy = get_df_pkg("gpu"), get_array_pkg("gpu")
    try:
        frame = cudf.read_json(io.BytesIO(payload), lines=True, keep_quotes=True)
    except (RuntimeError, ValueError, TypeError):
        return None
    if len(frame) != n_rows or "id" not in frame.columns or "features" not in frame.columns:
        return None
    ids, lists = frame["id"], frame["features"]
    if not cudf.api.types.is_string_dtype(ids.dtype) or ids.null_count:
        return None
    if not isinstance(lists.dtype, cudf.ListDtype) or lists.null_count:
        return None
    if bool((lists.list.len() != n_features).any()):
        return None
    leaves = lists.list.leaves
    if leaves.null_count or leaves.dtype.kind not in "iuf":
        return None
    matrix = leaves.values.astype(cupy.float64).reshape(n_rows, n_features)
    if not bool(cupy.isfinite(matrix).all()) or float(cupy.abs(matrix).max()) > FLOAT32_MAX:
        return None
    host_ids = _unquote(ids.to_arrow().cast(pa.string()))  # cuDF hands out large_string
    if host_ids is None:
        return None
    return host_ids, matrix.astype(cupy.float32)


def _unquote(literals: pa.Array) -> pa.Array | None:
    """JSON string literals as their values; ``None`` when one is not a non-empty string."""
    quoted = pc.and_(pc.starts_with(literals, '"'), pc.ends_with(literals, '"'))
    if not pc.all(pc.and_(quoted, pc.greater(pc.utf8_length(literals), 2))).as_py():
        return None
    if not pc.any(pc.match_substring(literals, "\\")).as_py():
        return pc.utf8_slice_codeunits(literals, 1, -1)
    values = [json.loads(literal) for literal in literals.to_pylist()]  # escapes: rare, decoded by json
    return pa.array(values, pa.string()) if all(values) else None
