"""``knnstream demo``: broker → training → worker → records → predictions, with the figures.

Starts the local broker when none answers, generates historical data (Gaussian blobs),
trains and publishes a model, starts ``knnstream serve`` as a separate process, streams
records through Kafka, waits for every prediction, prints accuracy, throughput and
latency, and stops what it started.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.demo.kafka_admin import start_local_broker, stop_local_broker, temporary_topics
from stream.demo.local_worker import start_worker_process, stop_worker_process, wait_worker_healthy
from stream.demo.produce import FeatureRecord, send
from stream.errors import ConfigurationError, KnnStreamError
from stream.logs import LIBRDKAFKA_LOGGER
from stream.settings import DemoSettings, TrainSettings
from stream.sink.admin import broker_reachable
from stream.train.job import train

N_CENTRES = 8


@dataclass
class Tally:
    """Send and receive times per record id, filled from two threads."""

    sent_at: dict[str, float] = field(default_factory=dict)
    received_at: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, object] = field(default_factory=dict)


def run_demo(settings: DemoSettings) -> None:
    started_broker = False
    if not broker_reachable(settings.bootstrap_servers):
        print(f"no Kafka at {settings.bootstrap_servers}: starting the local broker", flush=True)
        start_local_broker(settings.bootstrap_servers)
        started_broker = True
    try:
        with tempfile.TemporaryDirectory(prefix="knnstream-demo-") as workdir:
            _run(settings, Path(workdir))
    finally:
        if started_broker:
            stop_local_broker(settings.bootstrap_servers)


def _run(settings: DemoSettings, workdir: Path) -> None:
    centres = np.random.default_rng(7).uniform(-8, 8, size=(N_CENTRES, settings.features))
    data_path = _write_history(workdir, centres, settings)
    store = str(workdir / "models")
    manifest = train(
        TrainSettings(
            data=str(data_path),
            label="label",
            task="classification",
            k=str(settings.k),
            store=store,
            name="demo",
            alias="production",
            backend=settings.backend,
            scheduler=settings.scheduler,
            dask_workers=settings.dask_workers,
        )
    )
    print(f"trained demo:{manifest.version} holdout accuracy {manifest.holdout_metrics['accuracy']:.4f}", flush=True)
    suffix = uuid.uuid4().hex[:8]
    topics = {"input": f"demo-features-{suffix}", "output": f"demo-predictions-{suffix}", "dlq": f"demo-dlq-{suffix}"}
    with temporary_topics(settings.bootstrap_servers, dict.fromkeys(topics.values(), 4)):
        _serve_and_exchange(settings, store, topics, suffix, centres)


def _serve_and_exchange(
    settings: DemoSettings, store: str, topics: dict[str, str], suffix: str, centres: np.ndarray
) -> None:
    dashboard = _dashboard_address(settings.dashboard_address)
    worker = start_worker_process(
        settings.bootstrap_servers, store, "demo@production", topics, f"demo-{suffix}", settings.backend,
        settings.dask_workers, settings.batch_max_records, settings.metrics_port, settings.scheduler,
        extra_flags=["--dashboard-address", dashboard],
    )  # fmt: skip
    try:
        wait_worker_healthy(worker, settings.metrics_port)
        print(f"worker ready; metrics at http://127.0.0.1:{settings.metrics_port}/metrics", flush=True)
        if not settings.scheduler:
            print(f"Dask dashboard at http://{dashboard}/status", flush=True)
        records, labels = _stream_records(centres, settings)
        tally = _exchange(settings, topics, records, worker)
        _report(settings, tally, labels)
    finally:
        code = stop_worker_process(worker)
        print(f"worker stopped with exit code {code}", flush=True)


def _dashboard_address(asked: str) -> str:
    """HOST:PORT of the worker's Dask dashboard, a free port chosen here for ``:0`` so it can be printed."""
    host, _, port = asked.rpartition(":")
    host = host or "127.0.0.1"
    if port in {"", "0"}:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = str(probe.getsockname()[1])
    return f"{host}:{port}"


def _write_history(workdir: Path, centres: np.ndarray, settings: DemoSettings) -> Path:
    import pandas as pd

    features, labels = _blobs(centres, settings.training_rows, seed=1)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(settings.features)])
    frame["label"] = labels
    path = workdir / "history.parquet"
    frame.to_parquet(path)
    return path


def _blobs(centres: np.ndarray, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), rows)
    return centres[labels] + rng.normal(scale=5.0, size=(rows, centres.shape[1])), labels


def _stream_records(centres: np.ndarray, settings: DemoSettings) -> tuple[list[FeatureRecord], dict[str, int]]:
    features, labels = _blobs(centres, settings.records, seed=2)
    records = [FeatureRecord(f"demo-{i}", row) for i, row in enumerate(features.tolist())]
    return records, {record.id: int(label) for record, label in zip(records, labels, strict=True)}


def _exchange(
    settings: DemoSettings, topics: dict[str, str], records: list[FeatureRecord], worker: subprocess.Popen[bytes]
) -> Tally:
    from confluent_kafka import Consumer, Producer

    tally = Tally()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"demo-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "logger": LIBRDKAFKA_LOGGER,
        }
    )
    consumer.subscribe([topics["output"]])
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5, "logger": LIBRDKAFKA_LOGGER})
    sender = threading.Thread(
        target=send,
        args=(producer, topics["input"], records),
        kwargs={"on_sent": lambda record: tally.sent_at.__setitem__(record.id, time.monotonic())},
        daemon=True,
    )
    sender.start()
    try:
        _receive(consumer, tally, len(records), settings.timeout_s, worker)
    finally:
        consumer.close()
    sender.join()
    return tally


def _receive(consumer: object, tally: Tally, expected: int, timeout_s: float, worker: subprocess.Popen[bytes]) -> None:
    import json

    deadline = time.monotonic() + timeout_s
    while len(tally.received_at) < expected:
        if time.monotonic() > deadline:
            raise KnnStreamError(f"only {len(tally.received_at)} of {expected} predictions within {timeout_s:.0f} s")
        if worker.poll() is not None:
            raise KnnStreamError(f"the worker exited with code {worker.returncode}")
        for message in consumer.consume(num_messages=10_000, timeout=0.5):  # type: ignore[attr-defined]
            if message.error():
                continue
            now = time.monotonic()
            document = json.loads(message.value())
            tally.received_at.setdefault(document["id"], now)
            tally.predictions[document["id"]] = document["prediction"]


def _report(settings: DemoSettings, tally: Tally, labels: dict[str, int]) -> None:
    latencies_ms = np.array([(tally.received_at[i] - tally.sent_at[i]) * 1000 for i in tally.received_at])
    elapsed = max(tally.received_at.values()) - min(tally.sent_at.values())
    correct = sum(tally.predictions[i] == labels[i] for i in labels)
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    if len(tally.predictions) != len(labels):
        raise ConfigurationError("some records got no prediction")
    print(
        "\n".join(
            [
                f"records streamed       {len(labels)}",
                f"predictions received   {len(tally.predictions)} (one per record)",
                f"streamed accuracy      {correct / len(labels):.4f}",
                f"throughput             {len(labels) / elapsed:,.0f} records/s end to end",
                f"latency p50 / p99      {p50:.1f} ms / {p99:.1f} ms (every record is sent at once:"
                " the backlog's last records wait behind the rest)",
                f"metrics                http://127.0.0.1:{settings.metrics_port}/metrics",
            ]
        ),
        flush=True,
    )
