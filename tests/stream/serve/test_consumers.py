"""``knnstream serve --consumers 2`` against the real broker: two consumer processes of one group
on one Dask cluster share the partitions, every record gets one prediction, and a signal to the
command stops both, each committing what it delivered."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from model_store import ModelStore
from stream.bench.backlog import wait_group_settled
from stream.predict.cluster import threads_per_worker
from stream.serve.consumers import consumer_settings
from stream.settings import ServeSettings
from tests.helpers import free_consecutive_ports, read_output, scrape, start_worker, wait_healthy
from tests.stream.guarantees.reading import GroupOffsets, TopicWatcher, prediction_ids, read_topic
from tests.stream.guarantees.scenario import MODEL_NAME, publish_model, wait_until
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import serve_args

pytestmark = pytest.mark.kafka

PARTITIONS = 4
CONSUMERS = 2


def test_each_consumer_gets_the_shared_cluster_its_own_port_and_its_own_transactional_id() -> None:
    given = ServeSettings(model="m@production", consumers=3, metrics_port=9300, transactional_id="knn-pod-a")
    settings = [consumer_settings(given, index, "cpu", "tcp://127.0.0.1:8786") for index in range(3)]
    assert [own.metrics_port for own in settings] == [9300, 9301, 9302]
    assert [own.transactional_id for own in settings] == ["knn-pod-a-0", "knn-pod-a-1", "knn-pod-a-2"]
    assert {(own.scheduler, own.backend) for own in settings} == {("tcp://127.0.0.1:8786", "cpu")}
    any_port = ServeSettings(model="m@production", consumers=2, metrics_port=0)
    assert [consumer_settings(any_port, index, "cpu", "tcp://h:1").metrics_port for index in range(2)] == [0, 0]
    assert consumer_settings(any_port, 1, "cpu", "tcp://h:1").transactional_id is None  # each makes a unique one
    assert threads_per_worker(given.max_batches_in_flight, given.consumers) == 6  # each consumer's batches in flight
    with pytest.raises(ValidationError, match="--metrics-port 65535 leaves no port for each of --consumers 2"):
        ServeSettings(model="m@production", consumers=2, metrics_port=65535)
    with pytest.raises(ValidationError, match="--local-dask-workers threads runs the Dask workers in the serving"):
        ServeSettings(model="m@production", consumers=2, local_dask_workers="threads")
    assert ServeSettings(model="m@production", consumers=2, local_dask_workers="processes").consumers == 2
    elsewhere = ServeSettings(model="m@production", consumers=2, local_dask_workers="threads", scheduler="tcp://h:1")
    assert elsewhere.local_dask_workers == "threads"  # no local cluster: the flag has nothing to run


def _topics(new_topic: Callable[..., str]) -> Topics:
    return Topics(new_topic("in", PARTITIONS), new_topic("out", PARTITIONS), new_topic("dlq"))


def _start(
    bootstrap: str, topics: Topics, group: str, store: str, port: int, consumers: int = CONSUMERS, *extra: str
) -> subprocess.Popen[bytes]:
    args = serve_args(bootstrap, topics, group, store, port, 200, "--consumers", str(consumers), *extra)
    return start_worker(args, start_new_session=True)  # a signal to the command alone, not to its group


def _predicted(port: int, topic: str) -> float:
    line = f'knnstream_records_predicted_total{{topic="{topic}"}} '
    found = [float(text.removeprefix(line)) for text in scrape(port).splitlines() if text.startswith(line)]
    return found[0] if found else 0.0


def _log_lines(worker: subprocess.Popen[bytes]) -> list[dict[str, str]]:
    return [json.loads(line) for line in read_output(worker).splitlines() if line.startswith("{")]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_two_consumers_share_the_partitions_and_a_sigint_stops_both_with_everything_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str, guarantee: str
) -> None:
    """Exactly-once: each consumer's producer gets the given transactional id with its own suffix
    (one id shared would fence the other consumer's producer, and that consumer would stop)."""
    publish_model(tmp_store, rows=500)
    topics = _topics(new_topic)
    port = free_consecutive_ports(CONSUMERS)
    offsets = GroupOffsets(kafka_bootstrap, group_id, topics.input, PARTITIONS)
    extra = ["--guarantee", guarantee]
    if guarantee == "exactly-once":
        extra += ["--produce-on", "driver", "--transactional-id", f"knnstream-test-{group_id}"]
    worker = _start(kafka_bootstrap, topics, group_id, tmp_store, port, CONSUMERS, *extra)
    try:
        for consumer in range(CONSUMERS):
            wait_healthy(worker, port + consumer)
        wait_group_settled(kafka_bootstrap, group_id, CONSUMERS, PARTITIONS, timeout_s=60)
        positions = produce_records(kafka_bootstrap, topics.input, 4000)  # keyed: spread over the partitions
        offsets.wait_for(len(positions), [], timeout_s=60)
        # a consumer counts a batch's records once its commit returned, just after the broker has it
        wait_until(
            lambda: sum(_predicted(port + consumer, topics.input) for consumer in range(CONSUMERS)) >= len(positions),
            "every committed record counted by its consumer",
            timeout_s=10,
        )
        predicted = [_predicted(port + consumer, topics.input) for consumer in range(CONSUMERS)]
        worker.send_signal(signal.SIGINT)
        code = worker.wait(timeout=30)
        committed = offsets.total()
    finally:
        offsets.close()
        if worker.poll() is None:
            worker.kill()
    output = read_output(worker)
    assert code == 0, output[-3000:]
    assert all(count > 0 for count in predicted), f"each consumer predicted records of its partitions: {predicted}"
    assert sum(predicted) == len(positions)
    counts = Counter(prediction_ids(read_topic(kafka_bootstrap, topics.output, isolation="read_committed")))
    assert set(counts) == set(positions) and max(counts.values()) == 1, "every record exactly one prediction"
    assert committed == len(positions)
    stopped = {line.get("process") for line in _log_lines(worker) if line["message"] == "stopped cleanly"}
    assert stopped == {f"consumer {consumer}" for consumer in range(CONSUMERS)}, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


def test_a_sigint_mid_stream_commits_what_each_consumer_delivered(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str
) -> None:
    """Stopped mid-stream, then restarted: nothing delivered was left uncommitted, so the restart
    neither loses a record nor predicts one twice."""
    publish_model(tmp_store, rows=500)
    topics = _topics(new_topic)
    port = free_consecutive_ports(CONSUMERS)
    offsets = GroupOffsets(kafka_bootstrap, group_id, topics.input, PARTITIONS)
    output = TopicWatcher(kafka_bootstrap, topics.output, PARTITIONS)
    try:
        worker = _start(kafka_bootstrap, topics, group_id, tmp_store, port)
        for consumer in range(CONSUMERS):
            wait_healthy(worker, port + consumer)
        wait_group_settled(kafka_bootstrap, group_id, CONSUMERS, PARTITIONS, timeout_s=60)
        positions = produce_records(kafka_bootstrap, topics.input, 6000)
        offsets.wait_for(1500, [], timeout_s=60)
        worker.send_signal(signal.SIGINT)
        code = worker.wait(timeout=30)
        committed_at_exit, delivered_at_exit = offsets.total(), output.drain()
        again = _start(kafka_bootstrap, topics, group_id, tmp_store, port, consumers=1)  # one serve finishes
        # Ready first: the stop may have committed everything already, and a SIGTERM before the
        # serve has its handlers would kill it rather than stop it.
        wait_healthy(again, port)
        offsets.wait_for(len(positions), [], timeout_s=60)
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0, read_output(again)[-3000:]
    finally:
        offsets.close()
        output.close()
    assert code == 0, read_output(worker)[-3000:]
    assert delivered_at_exit == committed_at_exit, "everything delivered was committed before the exit"
    counts = Counter(prediction_ids(read_topic(kafka_bootstrap, topics.output)))
    assert set(counts) == set(positions), "nothing lost"
    assert max(counts.values()) == 1, "nothing predicted twice"


def test_a_consumer_that_fails_stops_the_others_and_the_command_names_it(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str
) -> None:
    publish_model(tmp_store, rows=500)
    topics = _topics(new_topic)
    port = free_consecutive_ports(CONSUMERS)
    with socket.socket() as taken:  # consumer 1's metrics port
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        worker = _start(kafka_bootstrap, topics, group_id, tmp_store, port)
        code = worker.wait(timeout=50)
    lines = read_output(worker).splitlines()
    assert code == 1, lines[-20:]
    assert lines[-1].startswith("knnstream serve: error: consumer 1 of 2 "), lines[-20:]
    assert str(port + 1) in lines[-1], lines[-1]
    stopped = {line.get("process") for line in _log_lines(worker) if line["message"] == "stopped cleanly"}
    assert stopped == {"consumer 0"}, "the other consumer was stopped, and stopped cleanly"


def _metric_total(port: int, name: str) -> float:
    """The sum of a metric's samples (over its labels) on one consumer's /metrics."""
    lines = [line for line in scrape(port).splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_promotion_reaches_both_consumers_and_no_batch_fails_on_the_version_left_behind(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str
) -> None:
    """Promoted while records stream: the consumers switch one after the other, and the old version
    stays on the shared workers until the last of them has moved on, so no batch of the later one
    fails for want of it (nor of the new one loaded again under the first)."""
    old = publish_model(tmp_store, rows=500, seed=1)
    new = publish_model(tmp_store, rows=500, alias="candidate", seed=2)
    topics = _topics(new_topic)
    port = free_consecutive_ports(CONSUMERS)
    offsets = GroupOffsets(kafka_bootstrap, group_id, topics.input, PARTITIONS)
    worker = _start(kafka_bootstrap, topics, group_id, tmp_store, port, CONSUMERS, "--model-poll-interval-s", "0.3")
    ports = [port + consumer for consumer in range(CONSUMERS)]
    try:
        for each in ports:
            wait_healthy(worker, each)
        wait_group_settled(kafka_bootstrap, group_id, CONSUMERS, PARTITIONS, timeout_s=60)
        during = produce_records(kafka_bootstrap, topics.input, 8000)
        offsets.wait_for(1000, [], timeout_s=60)
        ModelStore(tmp_store).promote(MODEL_NAME, "production", new.version)
        wait_until(
            lambda: all(_metric_total(each, "knnstream_model_reloads_total") >= 1 for each in ports),
            "both consumers switched",
        )
        offsets.wait_for(len(during), [], timeout_s=60)
        after = produce_records(kafka_bootstrap, topics.input, 1000, start=len(during))
        offsets.wait_for(len(during) + len(after), [], timeout_s=60)
        failures = [_metric_total(each, "knnstream_batch_failures_total") for each in ports]
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        offsets.close()
        if worker.poll() is None:
            worker.kill()
    assert code == 0, read_output(worker)[-3000:]
    assert failures == [0.0] * CONSUMERS, failures
    by_id: dict[str, list[str]] = {}
    for message in read_topic(kafka_bootstrap, topics.output):
        prediction = json.loads(message.value() or b"{}")
        by_id.setdefault(prediction["id"], []).append(prediction["model_version"])
    assert set(by_id) == set(during) | set(after) and all(len(got) == 1 for got in by_id.values())
    assert {by_id[record][0] for record in during} <= {old.version, new.version}
    assert {by_id[record][0] for record in after} == {new.version}
