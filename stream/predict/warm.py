"""The serving path run once when a model loads, before the worker reports ready.

The first batch a fresh worker scores would otherwise pay one-time costs: on a GPU worker CuPy
compiles each elementwise and reduction kernel with NVRTC the first time it runs in a process
whose kernel cache (``CUPY_CACHE_DIR``) is empty — seconds per kernel — and the JSON parse of a
part (:func:`stream.records.parse.parse_part`: cuDF's reader, then ``isfinite``, ``abs``, ``max``
and casts on the feature matrix) runs several of them; Arrow's readers and the encoder have
smaller first-use costs of their own. :func:`warm_serving_path` parses synthetic parts of the
model's width in each input format (JSON lines of float and of integer features: their feature
matrices come in two dtypes, and each dtype has kernels of its own; float32 rows), predicts them
and encodes the predictions, on the worker that loads the model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from stream.backend import Backend
from stream.errors import KnnStreamError
from stream.predict.model import KnnPredictor
from stream.records.encode import encode_values
from stream.records.parse import parse_part
from stream.settings import InputFormat

WARM_UP_LINES = 64


class WarmUpError(KnnStreamError):
    """The serving path failed on synthetic records when the model loaded."""


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up ran (each part's name: format and feature type) and how long it took."""

    parts: tuple[str, ...]
    seconds: float


def warm_serving_path(
    predictor: KnnPredictor, backend: Backend, one_at_a_time: threading.Lock, lines: int = WARM_UP_LINES
) -> WarmUp:
    """Parse, predict and encode synthetic parts of the model's width as a scoring task does;
    raises :class:`WarmUpError` when one does not parse (which a served record then would not)."""
    started = time.perf_counter()
    n_features = predictor.index.n_features
    names = []
    for name, input_format, payload, keys in synthetic_parts(n_features, lines):
        parsed = parse_part(input_format, payload, keys, n_features, backend)
        if parsed is None:
            raise WarmUpError(f"the warm-up's {name} records of {n_features} features did not parse")
        ids, matrix = parsed
        with one_at_a_time:  # a new version loads while the one serving predicts
            predictions, distances = predictor.predict_host(matrix)
        encode_values(ids, predictions, distances, "warm-up")
        names.append(name)
    return WarmUp(tuple(names), time.perf_counter() - started)


def synthetic_parts(n_features: int, lines: int) -> list[tuple[str, InputFormat, bytes, pa.Array]]:
    """Joined values and keys of a part, as the driver sends them: JSON lines of float features,
    of integer features, and float32 rows."""
    keys = pa.array([f"warm-up-{i}".encode() for i in range(lines)], pa.binary())
    rows = np.random.default_rng(0).normal(size=(lines, n_features)).round(3)
    floats = b"\n".join(_json_line(i, ", ".join(map(repr, row.tolist()))) for i, row in enumerate(rows))
    integers = b"\n".join(_json_line(i, ", ".join(map(str, row.astype(int).tolist()))) for i, row in enumerate(rows))
    float32 = rows.astype("<f4").tobytes()
    return [
        ("json-float", "json", floats, keys),
        ("json-integer", "json", integers, keys),
        ("float32", "float32", float32, keys),
    ]


def _json_line(index: int, features: str) -> bytes:
    return f'{{"id": "warm-up-{index}", "features": [{features}]}}'.encode()
