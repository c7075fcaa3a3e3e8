"""Promise 4: the broker restarts mid-stream (a broker of this test's own, never the shared one);
the worker recovers by itself and nothing is lost.

A quarter of the records is produced only once the broker is back: the worker may well have caught
up with the first three quarters while the broker was shutting down, and recovery is shown by the
worker committing records it could only have read from the restarted broker."""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from model_store import Manifest
from stream.demo.kafka_admin import BROKER_SCRIPT
from stream.sink.admin import create_topics
from tests.helpers import free_port
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import Scale, report
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import Workers

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class OwnBroker:
    """A single-node broker started by deploy/kafka.sh on free ports, its state in a temporary directory."""

    port: int
    controller_port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, action: str) -> float:
        """``deploy/kafka.sh start|stop`` for this broker; the seconds it took."""
        started = time.monotonic()
        env = {
            **os.environ,
            "KNNSTREAM_KAFKA_PORT": str(self.port),
            "KNNSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KNNSTREAM_KAFKA_HOME": str(self.home),
        }
        done = subprocess.run(
            ["bash", str(BROKER_SCRIPT), action], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, f"kafka.sh {action}: {done.stderr[-2000:]}"
        return time.monotonic() - started


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    broker = OwnBroker(free_port(), free_port(), tmp_path / "kafka")
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop")


def test_the_worker_recovers_from_a_broker_restart_by_itself(
    own_broker: OwnBroker,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
) -> None:
    bootstrap = own_broker.bootstrap
    names = Topics("in", "out", "dlq")
    create_topics(bootstrap, [names.input, names.output], partitions=scale.partitions)
    create_topics(bootstrap, [names.dlq])
    before_restart = scale.records * 3 // 4
    positions = produce_records(bootstrap, names.input, before_restart)
    offsets = GroupOffsets(bootstrap, "knnstream", names.input, scale.partitions)
    try:
        with Workers(bootstrap, names, "knnstream", tmp_store, scale.batch) as workers:
            worker = workers.start("w")
            offsets.wait_for(math.ceil(0.3 * scale.records), [worker])
            stop_s = own_broker.run("stop")
            start_s = own_broker.run("start")
            back = time.monotonic()
            committed_when_back = offsets.total()
            after_restart = scale.records - before_restart
            positions |= produce_records(bootstrap, names.input, after_restart, start=before_restart)
            offsets.wait_for(committed_when_back + 1, [worker], timeout_s=180)
            recovery_s = time.monotonic() - back
            offsets.wait_for(scale.records, [worker], timeout_s=300)
            failures = worker.metric_lines("knnstream_batch_failures_total{")
            code, _ = worker.terminate(timeout_s=30)
            log = worker.log()
    finally:
        offsets.close()
    result = tally(positions, prediction_ids(read_topic(bootstrap, names.output)))
    report(
        record_property,
        "broker restart",
        records=scale.records,
        broker_down_s=stop_s + start_s,
        committed_when_back=committed_when_back,
        recovery_s=recovery_s,
        batch_failures=failures or "none",
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0, log[-3000:]
    assert result.lost == 0
