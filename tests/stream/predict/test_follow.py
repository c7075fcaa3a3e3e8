"""Following an alias under load: one switch between batches, failed loads refused, shadow scoring."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from model_store import Manifest, ModelStore, parse_model_ref
from stream.predict.distributed import ModelLoadError
from stream.predict.follow import FollowMetrics, ModelFollower
from stream.predict.model import MODEL_FILE
from stream.predict.plugin import ModelPlugin
from stream.settings import TrainSettings
from stream.train.job import train
from tests.helpers import blobs, consume_until, free_port, read_output, scrape, start_worker, values, wait_healthy
from tests.helpers import write_history as write_history_file

pytestmark = pytest.mark.kafka


def _train(tmp_path: Path, store: str, seed: int, alias: str | None) -> Manifest:
    data = write_history_file(tmp_path / f"history-{seed}.parquet", rows=2000, seed=seed)
    return train(
        TrainSettings(
            data=str(data), label="label", k="3", store=store, name="blobs", alias=alias, backend="cpu", dask_workers=1
        )
    )


def _produce(bootstrap: str, topic: str, start: int, count: int) -> dict[str, tuple[int, int]]:
    """Send records ``start..start+count``; returns id → (partition, offset) from delivery reports."""
    positions: dict[str, tuple[int, int]] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    features, _ = blobs(count, seed=start + 1)

    def delivered(error: object, message: object) -> None:
        assert error is None, error
        positions[message.key().decode()] = (message.partition(), message.offset())  # type: ignore[attr-defined]

    for i, row in enumerate(features.tolist()):
        record_id = f"r{start + i}"
        value = json.dumps({"id": record_id, "features": row}).encode()
        while True:
            try:
                producer.produce(topic, key=record_id.encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return positions


def _metric(port: int, line_start: str) -> float:
    for line in scrape(port).splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_metric(port: int, line_start: str, at_least: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while _metric(port, line_start) < at_least:
        assert time.monotonic() < deadline, f"{line_start} never reached {at_least}"
        time.sleep(0.2)


def test_promotion_under_load_switches_once_between_batches_and_a_bad_version_is_refused(
    tmp_path: Path, tmp_store: str, kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    old = _train(tmp_path, tmp_store, seed=0, alias="production")
    new = _train(tmp_path, tmp_store, seed=1, alias=None)
    broken = _train(tmp_path, tmp_store, seed=2, alias=None)
    model_file = Path(tmp_store) / "blobs" / "versions" / broken.version / MODEL_FILE
    payload = bytearray(model_file.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    model_file.write_bytes(bytes(payload))

    topics = {"in": new_topic("in", 3), "out": new_topic("out", 3), "dlq": new_topic("dlq")}
    port = free_port()
    worker = start_worker([
        "--bootstrap-servers", kafka_bootstrap, "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"], "--group-id", group_id, "--model", "blobs@production", "--store", tmp_store,
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--backend", "cpu", "--dask-workers", "2",
        "--batch-max-records", "1000", "--model-poll-interval-s", "0.3",
    ])  # fmt: skip
    store = ModelStore(tmp_store)
    predicted = 'knnstream_records_predicted_total{topic="' + topics["in"] + '"}'
    try:
        wait_healthy(worker, port)
        positions = _produce(kafka_bootstrap, topics["in"], 0, 25_000)
        _wait_metric(port, predicted, 5_000)
        store.promote("blobs", "production", new.version)
        _wait_metric(port, 'knnstream_model_reloads_total{role="served"}', 1)
        positions |= _produce(kafka_bootstrap, topics["in"], 25_000, 25_000)
        _wait_metric(port, predicted, 50_000, timeout_s=120)
        store.promote("blobs", "production", broken.version)
        _wait_metric(port, 'knnstream_model_reload_failures_total{role="served"}', 1)
        positions |= _produce(kafka_bootstrap, topics["in"], 50_000, 1_000)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= 51_000)
        reloads = _metric(port, 'knnstream_model_reloads_total{role="served"}')
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    log = read_output(worker)
    assert code == 0, log[-3000:]
    assert "refused served version" in log and broken.version in log

    predictions = values(outputs)
    assert sorted(p["id"] for p in predictions) == sorted(positions), "exactly one prediction per record"
    for message, prediction in zip(outputs, predictions, strict=True):
        assert dict(message.headers())["knnstream.model.version"].decode() == prediction["model_version"]
    assert {p["model_version"] for p in predictions} == {old.version, new.version}
    assert reloads == 1

    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for prediction in predictions:
        partition, offset = positions[prediction["id"]]
        by_partition[partition].append((offset, prediction["model_version"]))
    for partition, rows in by_partition.items():
        versions = [version for _, version in sorted(rows)]
        in_switch_order = sorted(versions, key=lambda version: version == new.version)
        assert versions == in_switch_order, f"partition {partition}: the old version came back after the switch"


def test_shadow_version_scores_without_publishing(
    tmp_path: Path, tmp_store: str, kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    served = _train(tmp_path, tmp_store, seed=0, alias="production")
    _train(tmp_path, tmp_store, seed=1, alias="candidate")
    topics = {"in": new_topic("in"), "out": new_topic("out"), "dlq": new_topic("dlq")}
    port = free_port()
    worker = start_worker([
        "--bootstrap-servers", kafka_bootstrap, "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"], "--group-id", group_id, "--model", "blobs@production", "--store", tmp_store,
        "--shadow", "blobs@candidate", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        "--backend", "cpu", "--dask-workers", "1",
    ])  # fmt: skip
    try:
        wait_healthy(worker, port)
        _produce(kafka_bootstrap, topics["in"], 0, 2_000)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= 2_000)
        _wait_metric(port, "knnstream_shadow_compared_records_total", 2_000)
        agreement = _metric(port, "knnstream_shadow_agreement_ratio")
        agreed = _metric(port, "knnstream_shadow_agreed_records_total")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, read_output(worker)[-3000:]
    assert len(outputs) == 2_000
    assert {p["model_version"] for p in values(outputs)} == {served.version}
    assert 0.5 < agreed / 2_000 <= 1.0  # same blobs, different samples: mostly the same answers
    assert 0.0 < agreement <= 1.0


class RecordingPredictor:
    """Stands in for the Dask predictor: notes what the follower asks of it, in order."""

    def __init__(self, version: str, calls: list[str], refuse: str | None = None) -> None:
        self.version: str | None = version
        self.shadow_version: str | None = None
        self.calls, self.refuse = calls, refuse

    def load(self, plugin: ModelPlugin) -> None:
        if plugin.version == self.refuse:
            raise ModelLoadError(f"version {plugin.version} failed to load")
        self.calls.append(f"load {plugin.version}")

    def activate(self, version: str) -> str | None:
        self.calls.append(f"activate {version}")
        previous, self.version = self.version, version
        return previous


def test_the_batches_in_flight_settle_after_the_new_version_loads_and_before_it_serves(
    tmp_path: Path, tmp_store: str
) -> None:
    """The version replaced is unloaded from the workers at once: a batch still to run on it
    would fail, and be consumed again after other parts of it were produced."""
    old = _train(tmp_path, tmp_store, seed=0, alias="production")
    new = _train(tmp_path, tmp_store, seed=1, alias=None)
    store, calls = ModelStore(tmp_store), []
    predictor = RecordingPredictor(old.version, calls)
    follower = ModelFollower(
        store, parse_model_ref("blobs@production"), None, predictor, "cpu", old.n_features,  # type: ignore[arg-type]
        FollowMetrics(CollectorRegistry()), on_switch=lambda manifest: None, interval_s=0.0,
    )  # fmt: skip
    follower.maybe_switch(settle=lambda: calls.append("settle"))
    assert calls == []  # nothing new: nothing to settle
    store.promote("blobs", "production", new.version)
    follower.maybe_switch(settle=lambda: calls.append("settle"))
    assert calls == [f"load {new.version}", "settle", f"activate {new.version}"]
    broken = _train(tmp_path, tmp_store, seed=2, alias=None)
    predictor.refuse = broken.version
    store.promote("blobs", "production", broken.version)
    follower.maybe_switch(settle=lambda: calls.append("settle"))
    assert calls[3:] == []  # refused: the version in use stays, nothing to settle
