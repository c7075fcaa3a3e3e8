"""The same records get the same predictions from ``score`` (files) and ``serve`` (Kafka)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer
from distributed import Client

from stream.backend import Backend
from stream.backfill.score import run_score
from stream.backfill.settings import ScoreSettings
from tests.helpers import blobs, consume_until, free_port, read_output, start_worker, values, wait_healthy
from tests.stream.backfill.conftest import Trained

pytestmark = pytest.mark.kafka

ROWS = 600


def _serve_args(
    bootstrap: str, topics: dict[str, str], group: str, trained: Trained, port: int, backend: str
) -> list[str]:
    flags = {
        "--bootstrap-servers": bootstrap,
        "--input-topic": topics["in"],
        "--output-topic": topics["out"],
        "--dlq-topic": topics["dlq"],
        "--group-id": group,
        "--model": trained.ref,
        "--store": trained.store,
        "--metrics-port": str(port),
        "--metrics-host": "127.0.0.1",
        "--backend": backend,
        "--batch-max-records": "250",
        "--batch-max-wait-ms": "100",
        "--dask-workers": "1",
    }
    return [part for flag, value in flags.items() for part in (flag, value)]


def _produce(bootstrap: str, topic: str, frame: pd.DataFrame, features: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for record_id, row in zip(frame["id"], frame[features].to_numpy().tolist(), strict=True):
        producer.produce(topic, key=record_id.encode(), value=json.dumps({"id": record_id, "features": row}).encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def _stop(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as an orchestrator would; a worker that does not stop in time is killed."""
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=30)
        raise AssertionError(f"the worker ignored SIGTERM: {read_output(worker)}") from None


def test_score_and_serve_agree_on_every_record(
    tmp_path: Path,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    trained: Trained,
    dask_client: Client,
    backend: Backend,
) -> None:
    features = list(trained.manifest.feature_names)
    rows, _ = blobs(ROWS, seed=33)
    frame = pd.DataFrame(rows, columns=features)
    frame.insert(0, "id", [f"a{i}" for i in range(ROWS)])
    frame.to_parquet(tmp_path / "records.parquet")
    topics = {"in": new_topic("in", 3), "out": new_topic("out", 3), "dlq": new_topic("dlq")}
    _produce(kafka_bootstrap, topics["in"], frame, features)

    port = free_port()
    worker = start_worker(_serve_args(kafka_bootstrap, topics, group_id, trained, port, backend))
    try:
        settings = ScoreSettings(
            data=str(tmp_path / "records.parquet"),
            model=trained.ref,
            store=trained.store,
            output=str(tmp_path / "scored"),
            backend=backend,
        )
        run_score(settings, dask_client)  # while the worker starts
        wait_healthy(worker, port)
        streamed = values(consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= ROWS))
    finally:
        exit_code = _stop(worker)
    assert exit_code == 0, read_output(worker)

    scored = pd.read_parquet(tmp_path / "scored").set_index("id").sort_index()
    served = pd.DataFrame(streamed).set_index("id").sort_index()
    assert len(served) == len(scored) == ROWS and list(served.index) == list(scored.index)
    assert served["prediction"].tolist() == scored["prediction"].tolist()
    assert set(served["model_version"]) == set(scored["model_version"]) == {trained.manifest.version}
    np.testing.assert_allclose(served["distance"], scored["distance"], rtol=1e-6, atol=1e-6)
