"""``knnstream replay`` against the real broker: offset and time ranges, and untouched group offsets."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from distributed import Client

from model_store import ModelStore
from stream.backend import Backend
from stream.backfill.progress import BackfillMetrics, metrics_text
from stream.backfill.ranges import PartitionRange
from stream.backfill.replay import run_replay
from stream.backfill.settings import ReplaySettings
from stream.cli.backfill import add_backfill_parsers
from stream.demo.produce import FeatureRecord
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor
from stream.records.encode import MODEL_VERSION_HEADER
from stream.settings import InputFormat
from tests.helpers import blobs, consume_until, values
from tests.stream.backfill.conftest import Trained

pytestmark = pytest.mark.kafka

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# Records timed at BASE_MS are older than the broker's default retention (7 days): without this,
# its retention check (every 5 minutes) may delete them while a test reads them.
KEPT = {"retention.ms": "-1"}


@dataclass(frozen=True)
class Sent:
    """What was produced: per (partition, offset), the record id (None for a bad record)."""

    ids: dict[tuple[int, int], str | None]
    features: dict[str, list[float]]


def _produce(
    bootstrap: str, topic: str, plan: dict[int, list[tuple[int, bytes | None]]], input_format: InputFormat = "json"
) -> Sent:
    """Produce, per partition, records in order with explicit timestamps; ``None`` values are bad records."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    features, _ = blobs(sum(len(records) for records in plan.values()), seed=21)
    rows = iter(features.tolist())
    ids: dict[tuple[int, int], str | None] = {}
    by_id: dict[str, list[float]] = {}
    for partition, records in plan.items():
        for offset, (timestamp, bad) in enumerate(records):
            row = next(rows)
            record_id = f"p{partition}-o{offset}"
            value = bad if bad is not None else FeatureRecord(record_id, row).value(input_format)
            producer.produce(topic, value=value, key=record_id.encode(), partition=partition, timestamp=timestamp)
            ids[(partition, offset)] = None if bad is not None else record_id
            if bad is None:
                by_id[record_id] = row
    assert producer.flush(30) == 0
    return Sent(ids, by_id)


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


def _check_predictions(trained: Trained, outputs: list[dict[str, Any]], sent: Sent) -> None:
    index = KnnIndex.from_npz(ModelStore(trained.store).load(trained.ref).files[MODEL_FILE])
    rows = np.array([sent.features[str(o["id"])] for o in outputs], dtype=np.float32)
    expected, distances = build_predictor(index, "cpu").predict_host(rows)
    assert [o["prediction"] for o in outputs] == expected.tolist()
    np.testing.assert_allclose([o["distance"] for o in outputs], distances, rtol=1e-5, atol=1e-5)
    assert {o["model_version"] for o in outputs} == {trained.manifest.version}


@pytest.mark.parametrize(
    ("input_format", "bad_value", "reason"),
    [("json", b"{not json", "invalid_json"), ("float32", b"\0\0\0", "wrong_feature_count")],
)
def test_an_offset_range_is_replayed_exactly_and_no_group_offsets_move(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    trained: Trained,
    dask_client: Client,
    backend: Backend,
    input_format: InputFormat,
    bad_value: bytes,
    reason: str,
) -> None:
    topics = {"in": new_topic("in", 2, KEPT), "out": new_topic("out", 2), "dlq": new_topic("dlq")}
    plan: dict[int, list[tuple[int, bytes | None]]] = {
        0: [(BASE_MS + i, None) for i in range(40)],
        1: [(BASE_MS + i, bad_value if i == 12 else None) for i in range(30)],
    }
    sent = _produce(kafka_bootstrap, topics["in"], plan, input_format)
    live_offsets = {0: 5, 1: 7}
    _commit(kafka_bootstrap, group_id, topics["in"], live_offsets)
    metrics = BackfillMetrics()
    settings = ReplaySettings(
        bootstrap_servers=kafka_bootstrap,
        input_topic=topics["in"],
        output_topic=topics["out"],
        dlq_topic=topics["dlq"],
        from_offsets="0:10,1:0",
        to_offsets="0:30,1:25",
        model=trained.ref,
        store=trained.store,
        backend=backend,
        batch_max_records=16,
        input_format=input_format,
    )
    report = run_replay(settings, dask_client, metrics)

    in_range = [sent.ids[(0, o)] for o in range(10, 30)] + [sent.ids[(1, o)] for o in range(0, 25)]
    expected_ids = sorted(i for i in in_range if i is not None)
    assert report.ranges == [PartitionRange(0, 10, 30), PartitionRange(1, 0, 25)]
    assert (report.records, report.predicted, report.dead_letters) == (45, 44, {reason: 1})
    assert _end_offsets(kafka_bootstrap, topics["out"], 2) == 44, "nothing past the range was produced"
    outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= 44)
    predictions = values(outputs)
    assert sorted(str(p["id"]) for p in predictions) == expected_ids
    assert all(m.key().decode() == p["id"] for m, p in zip(outputs, predictions, strict=True))
    assert {dict(m.headers())[MODEL_VERSION_HEADER].decode() for m in outputs} == {trained.manifest.version}
    _check_predictions(trained, predictions, sent)
    dead = consume_until(kafka_bootstrap, topics["dlq"], lambda got: len(got) >= 1)
    assert [dict(m.headers())["knnstream.source.offset"] for m in dead] == [b"12"]

    assert _committed(kafka_bootstrap, group_id, topics["in"], 2) == live_offsets, "the live group's offsets moved"
    assert set(_committed(kafka_bootstrap, report.group_id, topics["in"], 2).values()) == {-1001}, "replay committed"
    assert 'knnstream_backfill_records_total{job="replay"} 45.0' in metrics_text(metrics)


@pytest.mark.parametrize("backend", ["cpu"])
def test_a_time_range_reads_records_timed_within_it_and_stops_on_its_own(
    kafka_bootstrap: str, new_topic: Callable[..., str], trained: Trained, dask_client: Client
) -> None:
    topics = {"in": new_topic("in", 3, KEPT), "out": new_topic("out")}
    plan: dict[int, list[tuple[int, bytes | None]]] = {
        0: [(BASE_MS + 1000 * i, b"" if i == 8 else None) for i in range(20)],
        1: [(BASE_MS - 100_000 + i, None) for i in range(10)],  # all before the range
        # partition 2 stays empty
    }
    sent = _produce(kafka_bootstrap, topics["in"], plan)
    settings = ReplaySettings(
        bootstrap_servers=kafka_bootstrap,
        input_topic=topics["in"],
        output_topic=topics["out"],
        from_time="2026-01-01T00:00:05Z",
        to_time="2026-01-01T01:00:12+01:00",  # BASE + 12 s, exclusive
        model=trained.ref,
        store=trained.store,
        backend="cpu",
    )
    report = run_replay(settings, dask_client)

    assert report.ranges == [PartitionRange(0, 5, 12), PartitionRange(1, 10, 10), PartitionRange(2, 0, 0)]
    assert (report.records, report.predicted, report.dead_letters) == (7, 6, {"empty_value": 1})
    assert report.dlq_topic is None
    assert _end_offsets(kafka_bootstrap, topics["out"], 1) == 6
    outputs = values(consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= 6))
    assert sorted(str(o["id"]) for o in outputs) == sorted(f"p0-o{o}" for o in range(5, 12) if o != 8)
    _check_predictions(trained, outputs, sent)


@pytest.mark.parametrize("backend", ["cpu"])
def test_the_replay_command_ends_at_once_on_an_empty_range(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    trained: Trained,
    dask_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = {"in": new_topic("in", 2, KEPT), "out": new_topic("out")}
    _produce(kafka_bootstrap, topics["in"], {0: [(BASE_MS, None)] * 3})
    parser = argparse.ArgumentParser(prog="knnstream")
    add_backfill_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "replay",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--input-topic",
            topics["in"],
            "--output-topic",
            topics["out"],
            "--from-offsets",
            "0:3,1:0",
            "--model",
            "blobs@production",
            "--store",
            trained.store,
            "--scheduler",
            dask_client.scheduler.address,
            "--backend",
            "cpu",
        ]
    )
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 0
    assert report["ranges"] == [{"partition": 0, "start": 3, "end": 3}, {"partition": 1, "start": 0, "end": 0}]
    assert _end_offsets(kafka_bootstrap, topics["out"], 1) == 0


def test_a_replay_with_probabilities_carries_predict_proba(
    kafka_bootstrap: str, new_topic: Callable[..., str], trained: Trained, dask_client: Client, backend: Backend
) -> None:
    topics = {"in": new_topic("in", 1, KEPT), "out": new_topic("out", 1)}
    sent = _produce(kafka_bootstrap, topics["in"], {0: [(BASE_MS + i, None) for i in range(30)]})
    settings = ReplaySettings(
        bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
        from_offsets="0:0", model=trained.ref, store=trained.store, backend=backend, probabilities=True,
    )  # fmt: skip
    run_replay(settings, dask_client)
    predictions = values(consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= 30))
    _check_predictions(trained, predictions, sent)
    index = KnnIndex.from_npz(ModelStore(trained.store).load(trained.ref).files[MODEL_FILE])
    rows = np.array([sent.features[str(p["id"])] for p in predictions], dtype=np.float32)
    _, _, expected = build_predictor(index, "cpu").predict_proba_host(rows)
    served = [[p["probabilities"][str(label)] for label in index.classes.tolist()] for p in predictions]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
