"""Shared fixtures: the backend switch, the real local Kafka broker, fresh topics and groups."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from stream.backend import Backend
from stream.demo.kafka_admin import start_local_broker
from stream.sink.admin import broker_reachable, create_topics, delete_topics

BOOTSTRAP = os.environ.get("KNNSTREAM_TEST_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every test taking ``backend`` runs on the CPU backend, and on the GPU one with ``-m gpu``."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The address of the local broker; started by deploy/kafka.sh when it is not running."""
    if not broker_reachable(BOOTSTRAP):
        start_local_broker(BOOTSTRAP)
    assert broker_reachable(BOOTSTRAP, timeout_s=10), f"no Kafka broker at {BOOTSTRAP}"
    return BOOTSTRAP


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Creates a topic with a fresh uuid name and returns the name; the topics go when the test ends.

    Deleting them keeps the broker's log directory small: a broker holding thousands of
    partitions from earlier runs takes minutes to start.
    """
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        create_topics(kafka_bootstrap, [name], partitions=partitions, config=config)
        created.append(name)
        return name

    yield make
    delete_topics(kafka_bootstrap, created)


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tmp_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield str(tmp_path_factory.mktemp("store"))
