"""The benchmark's backlog: written in one Kafka transaction, and made visible at once when
every worker is in the consumer group and has its partitions.

The workers read ``read_committed``, so they see none of the backlog while its transaction is
open: they start, join the group and wait, whatever order they come up in. Committing the
transaction then puts the whole backlog in front of all of them at the same moment, which is when
the clock starts. Without it, the first worker ready would start on the backlog alone and the
others would take their partitions from it in a rebalance under way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupState, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from stream.errors import KnnStreamError
from stream.produce import FeatureRecord, send
from stream.settings import InputFormat

TRANSACTION_TIMEOUT_MS = 600_000  # writing a backlog of millions of records, then the workers' start-up


class HeldBacklog:
    """Records written in a transaction left open until :meth:`release`."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._producer: Producer | None = None

    def write(self, topic: str, records: Iterable[FeatureRecord], input_format: InputFormat) -> int:
        """Write every record, uncommitted; how many."""
        producer = Producer({
            "bootstrap.servers": self._bootstrap_servers, "linger.ms": 20, "compression.type": "lz4",
            "transactional.id": f"knnstream-bench-{uuid.uuid4().hex}", "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        })  # fmt: skip
        producer.init_transactions(30)
        producer.begin_transaction()
        self._producer = producer
        return send(producer, topic, records, input_format=input_format)

    def release(self) -> None:
        """Commit the transaction: the whole backlog becomes readable at once."""
        if self._producer is None:
            raise KnnStreamError("no backlog was written")
        self._producer.commit_transaction(60)
        self._producer = None

    def abandon(self) -> None:
        """Abort a transaction not released (the benchmark failed before its clock started)."""
        if self._producer is not None:
            try:
                self._producer.abort_transaction(30)
            except KafkaException as exc:
                raise KnnStreamError(f"the backlog's transaction could not be aborted: {exc}") from exc
            finally:
                self._producer = None


def wait_group_settled(
    bootstrap_servers: str, group_id: str, members: int, partitions: int, timeout_s: float = 120.0
) -> None:
    """Wait until ``group_id`` is stable with ``members`` members, each holding partitions and
    together all ``partitions`` of the topic they read."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    seen = "not described yet"
    while time.monotonic() < deadline:
        group = admin.describe_consumer_groups([group_id])[group_id].result(timeout=10)
        held = [len(member.assignment.topic_partitions) for member in group.members]
        stable = group.state == ConsumerGroupState.STABLE
        if stable and len(held) == members and min(held) > 0 and sum(held) == partitions:
            return
        seen = f"{group.state.name.lower()}, partitions per member {held}"
        time.sleep(0.1)
    raise KnnStreamError(
        f"consumer group {group_id} did not settle on {members} members within {timeout_s:.0f} s ({seen})"
    )
