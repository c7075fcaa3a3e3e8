"""The serving path warmed up when a model loads: every synthetic part parses, is predicted and
encoded on the backend (``-m gpu``: cuDF's JSON reader and CuPy's kernels, on the GPU)."""

from __future__ import annotations

import threading

import pytest

from stream.backend import Backend
from stream.predict.model import build_predictor, index_from_training_data
from stream.predict.warm import WarmUpError, synthetic_parts, warm_serving_path
from stream.records.parse import parse_part
from tests.helpers import blobs


@pytest.mark.parametrize("n_features", [1, 7])
def test_every_synthetic_part_is_clean_and_of_the_models_width(backend: Backend, n_features: int) -> None:
    for name, input_format, payload, keys in synthetic_parts(n_features, 16):
        parsed = parse_part(input_format, payload, keys, n_features, backend)
        assert parsed is not None, name
        ids, matrix = parsed
        assert ids.to_pylist() == [f"warm-up-{i}" for i in range(16)]
        assert tuple(matrix.shape) == (16, n_features)


def test_the_warm_up_runs_each_part_through_parse_predict_and_encode(backend: Backend) -> None:
    features, labels = blobs(500, seed=1)
    predictor = build_predictor(index_from_training_data("classification", 3, "euclidean", features, labels), backend)
    done = warm_serving_path(predictor, backend, threading.Lock())
    assert done.parts == ("json-float", "json-integer", "float32")
    assert done.seconds > 0


def test_a_part_that_does_not_parse_fails_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = blobs(200, seed=1)
    predictor = build_predictor(index_from_training_data("classification", 3, "euclidean", features, labels), "cpu")
    monkeypatch.setattr("stream.predict.warm.parse_part", lambda *args: None)
    with pytest.raises(WarmUpError, match="json-float records of"):
        warm_serving_path(predictor, "cpu", threading.Lock())
