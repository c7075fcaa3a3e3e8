"""Scoring and producing on the Dask workers (each backend), against the real broker: one
prediction per record of every clean part, keyed like its record; nothing of a part that is not
clean, which is left to the driver."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import get_worker

from stream.backend import Backend
from stream.predict.cluster import close_client, start_client
from stream.predict.distributed import DaskPredictor, parts_per_batch
from stream.predict.plugin import ModelPlugin
from stream.settings import TrainSettings
from stream.sink.workers import ProducerPlugin, score_and_produce_on_worker
from stream.train.job import train
from tests.helpers import N_FEATURES, blobs, consume_until, write_history


def _lines(prefix: str, rows: np.ndarray) -> list[bytes]:
    return [json.dumps({"id": f"{prefix}{i}", "features": row.tolist()}).encode() for i, row in enumerate(rows)]


def test_workers_produce_the_clean_parts_and_hand_back_the_others(
    tmp_path: Path, tmp_store: str, backend: Backend, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    data = write_history(tmp_path / "history.parquet", rows=2000)
    version = train(TrainSettings(data=str(data), label="label", store=tmp_store, name="blobs", backend="cpu")).version
    topic = new_topic("produced")
    client = start_client(backend, None, 2)  # one worker on a one-GPU host
    try:
        predictor = DaskPredictor(client, backend)
        predictor.load(ModelPlugin(tmp_store, "blobs", version, backend))
        predictor.activate(version)
        client.register_plugin(ProducerPlugin({"bootstrap.servers": kafka_bootstrap}, 10.0))
        rows = blobs(60, seed=5)[0].astype(np.float32)
        expected = predictor.predict(rows).frame["prediction"].to_numpy()

        keys_a = [f"a{i}".encode() for i in range(60)]
        clean = predictor.produce_lines(_lines("a", rows), keys_a, N_FEATURES, topic, task=score_and_produce_on_worker)
        outcome = clean.outcome()
        assert all(part is not None for part in outcome)
        produced_a = [part for part in outcome if part is not None]
        np.testing.assert_array_equal(clean.prediction(produced_a).frame["prediction"].to_numpy(), expected)

        values = _lines("b", rows)
        values[-1] = b'{"id": "b59", "features": [1.0]}'  # the last part is not clean
        keys_b = [f"b{i}".encode() for i in range(60)]
        mixed = predictor.produce_lines(values, keys_b, N_FEATURES, topic, task=score_and_produce_on_worker)
        answers = mixed.outcome()
        assert answers[-1] is None and all(part is not None for part in answers[:-1])
        produced_b = sum(stop - start for (start, stop), part in zip(mixed.bounds, answers, strict=True) if part)

        messages = consume_until(kafka_bootstrap, topic, lambda got: len(got) >= 60 + produced_b, timeout_s=60)
        documents = {m.key().decode(): json.loads(m.value()) for m in messages}
        assert len(messages) == len(documents) == 60 + produced_b
        assert all(documents[f"a{i}"]["prediction"] == expected[i] for i in range(60))
        assert all(documents[f"b{i}"]["prediction"] == expected[i] for i in range(produced_b))
        assert {m.headers()[0][1].decode() for m in messages} == {version}
    finally:
        close_client(client)


@pytest.mark.parametrize(
    ("workers", "in_flight", "parts"),
    [(1, 1, 1), (1, 4, 1), (2, 1, 2), (2, 2, 2), (2, 3, 2), (2, 4, 1), (2, 8, 1), (4, 2, 4), (4, 4, 2), (3, 4, 2)],
)
def test_a_batch_is_split_only_as_far_as_gives_every_worker_two_tasks(workers: int, in_flight: int, parts: int) -> None:
    assert parts_per_batch(workers, in_flight) == parts
    assert parts_per_batch(0, in_flight) == 1  # before the scheduler knows of any worker


@pytest.mark.parametrize("backend", ["cpu"])  # a GPU host of one card runs one dask-cuda worker
def test_with_two_batches_in_flight_per_worker_each_batch_goes_whole_to_the_next_worker(
    tmp_path: Path, tmp_store: str, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_history(tmp_path / "history.parquet", rows=2000)
    version = train(TrainSettings(data=str(data), label="label", store=tmp_store, name="blobs", backend="cpu")).version
    client = start_client(backend, None, 2)
    try:
        client.wait_for_workers(2, timeout=60)
        rows = blobs(40, seed=6)[0].astype(np.float32)
        values, keys = _lines("c", rows), [f"c{i}".encode() for i in range(40)]
        split = DaskPredictor(client, backend, batches_in_flight=1)
        split.load(ModelPlugin(tmp_store, "blobs", version, backend))
        split.activate(version)
        expected = split.predict(rows).frame["prediction"].to_numpy()
        bounds, calls = split._submit_parts(_worker_address, values, keys, N_FEATURES)
        assert bounds == [(0, 20), (20, 40)] and len({call.result() for call in calls}) == 2

        whole = DaskPredictor(client, backend, batches_in_flight=4)
        whole.activate(version)
        scored = whole.predict_lines(values, keys, N_FEATURES)
        assert scored is not None
        np.testing.assert_array_equal(scored[1].frame["prediction"].to_numpy(), expected)
        places = []
        for _ in range(4):
            bounds, calls = whole._submit_parts(_worker_address, values, keys, N_FEATURES)
            assert bounds == [(0, 40)] and calls[0].address == calls[0].result()  # where it was sent
            places.append(calls[0].result())
        assert len(set(places)) == 2 and places[0] == places[2] and places[1] == places[3]

        # A worker that has gone but is still in the cached list: its part goes to the other one.
        gone = places[0]
        client.retire_workers([gone], close_workers=True, remove=True)
        whole._workers_checked_at = time.monotonic()
        assert gone in whole._worker_addresses()
        with caplog.at_level(logging.WARNING, logger="stream.predict.dispatch"):
            for _ in range(3):
                scored = whole.predict_lines(values, keys, N_FEATURES)
                assert scored is not None
                np.testing.assert_array_equal(scored[1].frame["prediction"].to_numpy(), expected)
        assert f"Dask worker {gone} is gone" in caplog.text
        assert whole._worker_addresses() == [places[1]]
    finally:
        close_client(client)


def _worker_address(payload: bytes, keys: Any, n_features: int) -> str:
    """A scoring task's stand-in that says where it ran."""
    return str(get_worker().address)
