"""Prediction records: JSON values assembled column-wise, the same whatever Arrow string type."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from stream.records.decode import DeadLetter
from stream.records.encode import encode_dead_letters, encode_scored, probability_objects
from tests.fakes import FakeMessage


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])  # cuDF hands out large strings
@pytest.mark.parametrize(
    "predictions",
    [np.array([3, 0, 7]), np.array([0.5, 1.0, np.nan]), np.array(["a", "b", "é"], dtype=object)],
    ids=["labels", "values", "names"],
)
def test_each_record_is_valid_json_keyed_like_its_input(string_type: pa.DataType, predictions: np.ndarray) -> None:
    ids = ["plain", 'quo"te\\', "ünï\n"]
    messages = [FakeMessage(b"{}", offset=i, key=f"k{i}".encode()) for i in range(3)]
    distances = np.array([0.25, np.inf, 1e-7], dtype=np.float32)
    records = list(encode_scored(messages, pa.array(ids, string_type), predictions, distances, "v1", "out").each())
    documents = [json.loads(record.value) for record in records]
    assert [record.key for record in records] == [b"k0", b"k1", b"k2"]
    assert [document["id"] for document in documents] == ids
    assert [document["model_version"] for document in documents] == ["v1"] * 3
    assert [document["distance"] for document in documents] == [0.25, None, pytest.approx(1e-7)]
    expected = [None if isinstance(p, float) and np.isnan(p) else p for p in predictions.tolist()]
    assert [document["prediction"] for document in documents] == expected
    assert all(record.headers == (("knnstream.model.version", b"v1"),) for record in records)


def test_booleans_are_json_booleans_and_probabilities_json_objects_keyed_by_class() -> None:
    shares = np.array([[0.25, 0.75], [1.0, 0.0]])
    messages = [FakeMessage(b"{}", offset=0, key=b"k0"), FakeMessage(b"{}", offset=1, key=b"k1")]
    for classes, keys in (([False, True], ["false", "true"]), (np.array(["fraud", "ok"]), ["fraud", "ok"])):
        probabilities = probability_objects(classes, shares)
        records = encode_scored(
            messages, pa.array(["a", "b"]), np.array([True, False]), np.array([0.5, 0.0]), "v1", "out", probabilities
        ).each()
        decoded = [json.loads(record.value) for record in records]
        assert [value["prediction"] for value in decoded] == [True, False]
        assert [value["probabilities"] for value in decoded] == [dict(zip(keys, row, strict=True)) for row in shares]
    plain = encode_scored(messages, pa.array(["a", "b"]), np.array([1, 2]), np.array([0.5, 0.0]), "v1", "out").each()
    assert all("probabilities" not in json.loads(record.value) for record in plain)


def test_a_batch_outbound_holds_its_predictions_as_columns_then_its_dead_letters() -> None:
    messages = [FakeMessage(b"{}", offset=i, key=f"k{i}".encode()) for i in range(2)]
    bad = FakeMessage(b"x" * 10, offset=2, key=b"k2")
    scored = encode_scored(messages, pa.array(["a", "b"]), np.array([1, 2]), np.array([0.5, 0.0]), "v1", "out")
    outbound = scored + encode_dead_letters([DeadLetter(bad, "not_json", "ValueError", "no")], "dlq", 4)
    assert len(outbound) == 3 and len(scored) == 2
    assert [column.keys for column in outbound.predictions] == [[b"k0", b"k1"]]
    records = list(outbound.each())
    assert [(record.topic, record.key) for record in records] == [("out", b"k0"), ("out", b"k1"), ("dlq", b"k2")]
    assert records[2].value == b"xxxx" and ("knnstream.value.truncated", b"true") in records[2].headers


def test_predictions_for_fewer_records_than_messages_are_refused() -> None:
    messages = [FakeMessage(b"{}", offset=i, key=b"k") for i in range(3)]
    with pytest.raises(ValueError, match="2 predictions for 3 records"):
        encode_scored(messages, pa.array(["a", "b"]), np.array([1, 2]), np.array([0.5, 0.0]), "v1", "out")


def test_keys_read_already_are_the_records_keys() -> None:
    messages = [FakeMessage(b"{}", offset=i, key=b"from the message") for i in range(2)]
    scored = encode_scored(
        messages, pa.array(["a", "b"]), np.array([1, 2]), np.array([0.5, 0.0]), "v1", "out", keys=[b"k0", None]
    )
    assert [record.key for record in scored.each()] == [b"k0", None]
