"""The worker end to end against the real broker: train → store → serve → predictions."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer

from model_store import Manifest, ModelStore
from stream.backend import Backend
from stream.demo.produce import FeatureRecord
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor
from stream.settings import TrainSettings
from stream.train.job import train
from tests.helpers import (
    N_FEATURES,
    blobs,
    consume_until,
    free_port,
    read_output,
    scrape,
    start_worker,
    values,
    wait_healthy,
    write_history,
)

pytestmark = pytest.mark.kafka

BAD_VALUES = {
    "invalid_json": b"{this is not json",
    "wrong_feature_count": json.dumps({"id": "bad-count", "features": [1.0, 2.0]}).encode(),
    "non_finite": b'{"id": "bad-nan", "features": [NaN, 1, 2, 3, 4, 5]}',
    "empty_value": b"",
    "invalid_schema": json.dumps({"features": [0.0] * N_FEATURES}).encode(),
    "oversized": json.dumps({"id": "big", "features": [0.0] * N_FEATURES, "pad": "x" * 5000}).encode(),
}
# reason → (key, value) of a bad record in the float32 format (the id is the key)
BAD_FLOAT32: dict[str, tuple[bytes | None, bytes]] = {
    "wrong_feature_count": (b"bad-count", np.array([1.0, 2.0], "<f4").tobytes()),
    "non_finite": (b"bad-nan", np.array([np.nan] + [1.0] * (N_FEATURES - 1), "<f4").tobytes()),
    "empty_value": (b"bad-empty", b""),
    "missing_key": (None, np.zeros(N_FEATURES, "<f4").tobytes()),
    "invalid_key": (b"\xff\xfe", np.zeros(N_FEATURES, "<f4").tobytes()),
    "oversized": (b"big", b"\0" * 4000),
}


def _bad_records(input_format: str) -> dict[str, tuple[bytes | None, bytes]]:
    if input_format == "float32":
        return BAD_FLOAT32
    return {reason: (f"bad-{reason}".encode(), value) for reason, value in BAD_VALUES.items()}


@pytest.fixture
def trained(tmp_path: Path, tmp_store: str, backend: Backend) -> Manifest:
    data = write_history(tmp_path / "history.parquet", rows=3000)
    settings = TrainSettings(
        data=str(data),
        label="label",
        k="5",
        store=tmp_store,
        name="blobs",
        alias="production",
        backend=backend,
        dask_workers=2,
    )
    return train(settings)


def _serve_args(
    bootstrap: str, topics: dict[str, str], group: str, store: str, port: int, backend: str, input_format: str = "json"
) -> list[str]:
    return [
        "--input-format",
        input_format,
        "--bootstrap-servers",
        bootstrap,
        "--input-topic",
        topics["in"],
        "--output-topic",
        topics["out"],
        "--dlq-topic",
        topics["dlq"],
        "--group-id",
        group,
        "--model",
        "blobs@production",
        "--store",
        store,
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--backend",
        backend,
        "--batch-max-records",
        "500",
        "--batch-max-wait-ms",
        "100",
        "--max-record-bytes",
        "2000",
    ]


def _produce(
    bootstrap: str, topic: str, features: np.ndarray, bad: dict[str, tuple[bytes | None, bytes]], input_format: str
) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap})
    ids = [f"rec-{i}" for i in range(len(features))]
    bad_items = list(bad.values())
    for i, (record_id, row) in enumerate(zip(ids, features.tolist(), strict=True)):
        producer.produce(topic, key=record_id.encode(), value=FeatureRecord(record_id, row).value(input_format))
        if i % 400 == 0 and bad_items:
            key, value = bad_items.pop()
            producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0
    return ids


@pytest.mark.parametrize("input_format", ["json", "float32"])
def test_every_record_gets_exactly_one_prediction_and_bad_ones_are_dead_lettered(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    tmp_store: str,
    trained: Manifest,
    backend: Backend,
    input_format: str,
) -> None:
    topics = {"in": new_topic("in", 3), "out": new_topic("out", 3), "dlq": new_topic("dlq")}
    features, _ = blobs(2400, seed=9)
    bad = _bad_records(input_format)
    ids = _produce(kafka_bootstrap, topics["in"], features, bad, input_format)
    port = free_port()
    worker = start_worker(_serve_args(kafka_bootstrap, topics, group_id, tmp_store, port, backend, input_format))
    try:
        wait_healthy(worker, port)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= len(ids))
        dead = consume_until(kafka_bootstrap, topics["dlq"], lambda got: len(got) >= len(bad))
        metrics = scrape(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=30)
    output_log = read_output(worker)
    assert exit_code == 0, output_log

    predictions = values(outputs)
    counts = Counter(p["id"] for p in predictions)
    assert set(counts) == set(ids) and max(counts.values()) == 1, "every id exactly once"
    assert all(p["model_version"] == trained.version for p in predictions)
    assert all(m.key().decode() == p["id"] for m, p in zip(outputs, predictions, strict=True))

    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{trained.version}").files[MODEL_FILE])
    expected, distances = build_predictor(index, "cpu").predict_host(features)
    by_id = {p["id"]: p for p in predictions}
    assert [by_id[i]["prediction"] for i in ids] == expected.tolist()
    np.testing.assert_allclose([by_id[i]["distance"] for i in ids], distances, rtol=1e-4, atol=1e-4)

    reasons = {dict(m.headers())["knnstream.error.reason"].decode() for m in dead}
    assert reasons == set(bad)
    keys = {dict(m.headers())["knnstream.error.reason"].decode(): m.key() for m in dead}
    assert keys == {reason: key for reason, (key, _) in bad.items()}, "each dead letter keeps its original key"
    for message in dead:
        headers = dict(message.headers())
        assert headers["knnstream.source.topic"].decode() == topics["in"]
        assert int(headers["knnstream.source.offset"]) >= 0
        assert headers["knnstream.error.class"] == b"RecordError"
        assert headers["knnstream.error.message"]
    assert f'knnstream_records_predicted_total{{topic="{topics["in"]}"}} {float(len(ids))}' in metrics
    assert f'knnstream_records_consumed_total{{topic="{topics["in"]}"}} {float(len(ids) + len(bad))}' in metrics


def _serve_once(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", "serve", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("backend", ["cpu"])
def test_bad_configuration_fails_at_start_with_one_clear_line(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_store: str, trained: Manifest
) -> None:
    existing = new_topic("in")
    common = [
        "--store",
        tmp_store,
        "--metrics-port",
        "0",
        "--backend",
        "cpu",
        "--output-topic",
        existing,
        "--dlq-topic",
        existing,
    ]
    cases = {
        "missing topic": (
            ["--bootstrap-servers", kafka_bootstrap, "--input-topic", "no-such-topic", "--model", "blobs@production"],
            "missing topic(s) no-such-topic",
        ),
        "unknown alias": (
            ["--bootstrap-servers", kafka_bootstrap, "--input-topic", existing, "--model", "blobs@nope"],
            "nope",
        ),
        "unknown model": (
            ["--bootstrap-servers", kafka_bootstrap, "--input-topic", existing, "--model", "other:v1"],
            "other",
        ),
        "feature count": (
            [
                "--bootstrap-servers",
                kafka_bootstrap,
                "--input-topic",
                existing,
                "--model",
                "blobs@production",
                "--expected-features",
                "3",
            ],
            "takes 6",
        ),
        "unreachable broker": (
            ["--bootstrap-servers", "127.0.0.1:1", "--input-topic", existing, "--model", "blobs@production"],
            "cannot reach Kafka",
        ),
    }
    for case, (args, expected) in cases.items():
        result = _serve_once(*args, *common)
        assert result.returncode == 1, case
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("knnstream serve: error:") and expected in last, (case, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, case


@pytest.mark.parametrize("backend", ["cpu"])
def test_a_taken_metrics_port_fails_at_start_with_one_clear_line(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_store: str, trained: Manifest
) -> None:
    topic = new_topic("in")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_once(
            "--bootstrap-servers", kafka_bootstrap, "--input-topic", topic, "--output-topic", topic,
            "--dlq-topic", topic, "--model", "blobs@production", "--store", tmp_store, "--backend", "cpu",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("knnstream serve: error: cannot serve metrics on 127.0.0.1:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("produce_on", ["workers", "driver"])
def test_string_labels_and_probabilities_are_served_end_to_end(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    tmp_path: Path,
    tmp_store: str,
    backend: Backend,
    produce_on: str,
) -> None:
    history, codes = blobs(2000, seed=4)
    frame = pd.DataFrame(history, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["label"] = np.array(["ant", "bee", "cat", "dog"])[codes]
    frame.to_parquet(tmp_path / "names.parquet")
    settings = TrainSettings(
        data=str(tmp_path / "names.parquet"), label="label", k="7", scale="standard", weights="distance",
        store=tmp_store, name="blobs", alias="production", backend=backend, dask_workers=2,
    )  # fmt: skip
    trained = train(settings)
    topics = {"in": new_topic("in", 2), "out": new_topic("out", 2), "dlq": new_topic("dlq")}
    features, _ = blobs(800, seed=10)
    ids = _produce(kafka_bootstrap, topics["in"], features, {}, "json")
    port = free_port()
    args = _serve_args(kafka_bootstrap, topics, group_id, tmp_store, port, backend)
    worker = start_worker([*args, "--probabilities", "--produce-on", produce_on])
    try:
        wait_healthy(worker, port)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= len(ids))
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=30)
    assert exit_code == 0, read_output(worker)

    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{trained.version}").files[MODEL_FILE])
    expected, _, probabilities = build_predictor(index, "cpu").predict_proba_host(features.astype(np.float32))
    by_id = {p["id"]: p for p in values(outputs)}
    assert [by_id[i]["prediction"] for i in ids] == expected.tolist()
    assert all(isinstance(by_id[i]["prediction"], str) for i in ids)
    served = np.array([[by_id[i]["probabilities"][name] for name in ("ant", "bee", "cat", "dog")] for i in ids])
    np.testing.assert_allclose(served, probabilities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-12)
