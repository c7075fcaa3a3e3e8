"""Parsing a part's joined values into ids and a feature matrix, where the part is scored.

JSON lines with cuDF's JSON reader on a GPU worker, with Arrow's on a CPU one; float32 values
need no parsing (:mod:`stream.records.formats`). ``None`` means a record of the part is not
clean: the caller then decodes it record by record (:mod:`stream.records.decode`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stream.backend import Backend, get_array_pkg, get_df_pkg
from stream.records.decode import FLOAT32_MAX, decode_lines
from stream.records.formats import parse_float32
from stream.settings import InputFormat


def parse_part(
    input_format: InputFormat, payload: bytes, keys: pa.Array, n_features: int, backend: Backend
) -> tuple[pa.Array, Any] | None:
    """Ids (host Arrow strings) and a float32 feature matrix of the backend's array type, of the
    joined values of a part (:func:`stream.records.formats.joined`); ``None`` when not clean."""
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
    """cuDF's JSON reader; the same checks as :func:`stream.records.decode.decode_lines`.

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
