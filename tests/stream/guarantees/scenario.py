"""The scenario runner of the delivery-guarantee tests.

Keyed feature records go in, one or more ``knnstream serve`` processes run (and are killed,
stalled, restarted), predictions come out, and the figures (lost, duplicated, ...) are printed
and attached to the test report. Every process started here runs in a session of its own and
is killed with its whole process group on the way out, Dask children included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from model_store import Manifest, ManifestDraft, ModelStore
from stream.demo.local_worker import wait_worker_healthy
from stream.errors import KnnStreamError
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from tests.helpers import N_FEATURES, blobs, free_port, read_output, start_worker

SCALE_VARIABLE = "KNNSTREAM_TEST_SCALE"
MODEL_NAME = "blobs"
MODEL_REF = f"{MODEL_NAME}@production"
MAX_IN_FLIGHT = 2  # the default of --max-batches-in-flight
# A batch is held in its prediction by stopping the Dask worker processes: a worker whose batches
# are held runs its one Dask worker as a process, not as threads of its own (the CPU default).
DASK_WORKER_PROCESSES = "--local-dask-workers=processes"
SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms: a dead member leaves the group soonest


@dataclass(frozen=True)
class Scale:
    """How big the heavy scenarios are: ``ci`` (default, a 2-core machine) or ``full``."""

    name: str
    records: int
    partitions: int
    batch: int


SCALES = {
    "ci": Scale("ci", records=12_000, partitions=6, batch=300),
    "full": Scale("full", records=100_000, partitions=6, batch=2_000),
}


def current_scale() -> Scale:
    name = os.environ.get(SCALE_VARIABLE, "ci")
    if name not in SCALES:
        raise pytest.UsageError(f"{SCALE_VARIABLE} must be one of {sorted(SCALES)}, not {name!r}")
    return SCALES[name]


# ---------------------------------------------------------------------------------------- model


def publish_model(store: str, rows: int, alias: str = "production", seed: int = 0) -> Manifest:
    """A classification index of ``rows`` blob points, published straight to the store (no Dask)."""
    features, labels = blobs(rows, seed)
    index = index_from_training_data("classification", 5, "euclidean", features, labels)
    draft = ManifestDraft(
        task="classification",
        k=5,
        metric="euclidean",
        feature_names=tuple(f"f{i}" for i in range(N_FEATURES)),
        n_features=N_FEATURES,
        classes=tuple(index.classes.tolist()),
        training_rows=rows,
        backend="cpu",
        format=FORMAT,
    )
    return ModelStore(store).publish(MODEL_NAME, {MODEL_FILE: index.to_npz()}, draft, aliases=[alias])


# -------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dlq: str


def record_value(record_id: str, row: Sequence[float], padding: int = 0) -> bytes:
    document: dict[str, Any] = {"id": record_id, "features": list(row)}
    if padding:
        document["note"] = "x" * padding  # ignored by the decoder; makes records (and the backlog) bigger
    return json.dumps(document).encode()


Positions = dict[str, tuple[int, int]]  # record id → (partition, offset)


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send (key, value) pairs in order; returns each one's (partition, offset) from its delivery report."""
    reports: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})

    def on_delivery(number: int) -> Callable[[Any, Message], None]:
        def delivered(error: Any, message: Message) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                reports[number] = (int(message.partition() or 0), int(message.offset() or 0))

        return delivered

    count = 0
    for key, value in items:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery(count))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    assert producer.flush(120) == 0, "records left unsent"
    assert not errors, errors[:3]
    return [reports[number] for number in range(count)]


def produce_records(bootstrap: str, topic: str, count: int, start: int = 0, padding: int = 0) -> Positions:
    """Keyed good records ``r<start>`` ... ; the key is the id, so one id stays on one partition."""
    features, _ = blobs(count, seed=start + 7)
    ids = [f"r{start + i}" for i in range(count)]
    items = ((i.encode(), record_value(i, row, padding)) for i, row in zip(ids, features.tolist(), strict=True))
    return dict(zip(ids, produce(bootstrap, topic, items), strict=True))


# -------------------------------------------------------------------------------------- workers


def serve_args(bootstrap: str, topics: Topics, group: str, store: str, port: int, batch: int, *extra: str) -> list[str]:
    return [
        "--bootstrap-servers", bootstrap, "--input-topic", topics.input, "--output-topic", topics.output,
        "--dlq-topic", topics.dlq, "--group-id", group, "--model", MODEL_REF, "--store", store,
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--backend", "cpu", "--dask-workers", "1",
        "--batch-max-records", str(batch), "--batch-max-wait-ms", "100",
        "--session-timeout-ms", str(SESSION_TIMEOUT_MS), "--max-poll-interval-ms", "10000",
        *extra,
    ]  # fmt: skip


class WorkerProcess:
    """One ``knnstream serve`` in a new session, so that its process group is the whole worker."""

    def __init__(self, name: str, args: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.process = start_worker(args, env=env, start_new_session=True)
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return read_output(self.process)

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"worker {self.name} exited with {self.process.returncode}: {self.log()[-4000:]}")

    def wait_healthy(self, timeout_s: float = 90.0) -> None:
        try:
            wait_worker_healthy(self.process, self.port, timeout_s)
        except KnnStreamError as exc:
            raise AssertionError(f"worker {self.name}: {exc}: {self.log()[-4000:]}") from exc

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def metric(self, line_start: str) -> float:
        """The value of the first /metrics line starting with ``line_start`` (0 when absent)."""
        for line in self.metrics().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def metric_lines(self, line_start: str) -> dict[str, float]:
        """Every /metrics line starting with ``line_start``: series → value."""
        found = {}
        for line in self.metrics().splitlines():
            if line.startswith(line_start):
                series, value = line.rsplit(" ", 1)
                found[series] = float(value)
        return found

    def signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, as a crashing pod; waits for the main process."""
        self.signal_group(signal.SIGKILL)
        self.exit_code = self.process.wait(timeout=30)

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        """SIGTERM to the main process only (as a pod's stop); its exit code and seconds to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.exit_code = self.process.wait(timeout=timeout_s)
        return self.exit_code, time.monotonic() - started

    def wait_exit(self, timeout_s: float) -> int:
        self.exit_code = self.process.wait(timeout=timeout_s)
        return self.exit_code

    def close(self) -> None:
        """Make sure nothing of this worker is left running: the group is killed, the process reaped."""
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def dask_worker_pids(self) -> list[int]:
        """The Dask worker processes of the worker's local cluster (spawned by its nannies)."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                command = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "spawn_main" in command:
                pids.append(child.pid)
        return pids

    def hold_batch_in_predict(self) -> list[int]:
        """SIGSTOP the Dask workers; returns (their pids) once a batch is decoded but not predicted.

        That batch cannot finish its prediction until the Dask workers are continued. The worker
        must run them as processes (started with :data:`DASK_WORKER_PROCESSES`).
        """
        held = self.dask_worker_pids()
        assert held, f"no Dask worker processes under pid {self.pid} (start it with {DASK_WORKER_PROCESSES})"
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        wait_until(self._batch_in_predict, "a batch decoded and waiting for its prediction")
        return held

    def _batch_in_predict(self) -> bool:
        decoded = self.metric("knnstream_batch_size_records_count")
        predicted = self.metric("knnstream_predict_duration_seconds_count")
        return decoded > predicted

    def peak_rss_bytes(self) -> int:
        """VmHWM of the main process: its peak resident set size so far."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@dataclass
class Workers:
    """Starts workers with shared arguments; on exit every one of them is killed and reaped."""

    bootstrap: str
    topics: Topics
    group: str
    store: str
    batch: int
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, *extra: str, healthy: bool = True, env: dict[str, str] | None = None) -> WorkerProcess:
        port = free_port()
        args = serve_args(self.bootstrap, self.topics, self.group, self.store, port, self.batch, *extra)
        worker = WorkerProcess(name, args, port, env)
        self.started.append(worker)
        if healthy:
            worker.wait_healthy()
        return worker

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for worker in self.started:
            worker.close()
        if error is not None:
            for worker in self.started:
                print(f"----- log of worker {worker.name} (last 6000 characters) -----\n{worker.log()[-6000:]}")


# ------------------------------------------------------------------------------ offsets, output


class GroupOffsets:
    """Reads the offsets a consumer group committed on a topic, without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        # read_uncommitted: committed offsets as they stand, without waiting for pending transactions
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> dict[int, int]:
        """Partition → committed offset (0 when none yet)."""
        positions = self._consumer.committed(self._partitions, timeout=10)
        return {p.partition: max(0, p.offset) for p in positions}

    def total(self) -> int:
        return sum(self.committed().values())

    def wait_for(
        self, at_least: int, workers: Sequence[WorkerProcess], timeout_s: float = 120.0, interval_s: float = 0.05
    ) -> int:
        """Poll until the committed offsets add up to ``at_least``; the workers must stay alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            total = self.total()
            if total >= at_least:
                return total
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"committed offsets reached {total}, not {at_least}, in {timeout_s} s")
            time.sleep(interval_s)

    def close(self) -> None:
        self._consumer.close()


class TopicWatcher:
    """Follows a topic from its start (no consumer group), counting what arrives."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, isolation: str = "read_uncommitted") -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watcher-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
        self._partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        self._consumer.assign(self._partitions)
        self._reached: dict[int, int] = {}  # partition → offset up to which it was read
        self.messages: list[Message] = []

    def poll(self, timeout_s: float = 0.01) -> int:
        """Take what has arrived; the number of messages seen so far."""
        for message in self._consumer.consume(num_messages=10_000, timeout=timeout_s):
            error = message.error()
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if error is None:
                self.messages.append(message)
                self._reached[partition] = max(self._reached.get(partition, 0), offset + 1)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._reached[partition] = max(self._reached.get(partition, 0), offset)
        return len(self.messages)

    def wait_for(self, at_least: int, workers: Sequence[WorkerProcess], timeout_s: float = 120.0) -> int:
        """Poll until ``at_least`` messages arrived; the workers must stay alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while (seen := self.poll()) < at_least:
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{seen} messages arrived, not {at_least}, in {timeout_s} s")
        return seen

    def drain(self, timeout_s: float = 30.0) -> int:
        """Read up to the end each partition has now; the number of messages seen."""
        ends = {p.partition: self._consumer.get_watermark_offsets(p, timeout=10)[1] for p in self._partitions}
        deadline = time.monotonic() + timeout_s
        while any(self._reached.get(partition, 0) < end for partition, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read to the end of the topic in {timeout_s} s"
            self.poll()
        return len(self.messages)

    def close(self) -> None:
        self._consumer.close()


def read_topic(
    bootstrap: str, topic: str, isolation: str = "read_uncommitted", timeout_s: float = 120.0
) -> list[Message]:
    """Every message of ``topic`` up to its current end (read_committed: up to the last stable offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Message] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: only partitions {sorted(at_end)} read to the end"
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                    at_end.discard(int(message.partition() or 0))
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(int(message.partition() or 0))
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        return messages
    finally:
        consumer.close()


def prediction_ids(messages: Sequence[Message]) -> list[str]:
    return [str(json.loads(m.value() or b"{}")["id"]) for m in messages]


@dataclass(frozen=True)
class Tally:
    expected: int
    received: int
    lost: int
    duplicated: int


def tally(expected_ids: Iterable[str], received_ids: Sequence[str]) -> Tally:
    expected = set(expected_ids)
    counts = Counter(received_ids)
    return Tally(
        expected=len(expected),
        received=len(received_ids),
        lost=len(expected - counts.keys()),
        duplicated=sum(n - 1 for n in counts.values()),
    )


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0, interval_s: float = 0.05) -> float:
    """Poll ``condition``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


# -------------------------------------------------------------------------------------- figures


def report(record_property: Callable[[str, object], None], scenario: str, **figures: object) -> str:
    """Print the scenario's figures and attach them to the test report (shown in the terminal summary)."""
    line = f"{scenario}: " + ", ".join(f"{name}={_format(value)}" for name, value in figures.items())
    print(f"[guarantees] {line}")
    record_property("guarantee", line)
    return line


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
