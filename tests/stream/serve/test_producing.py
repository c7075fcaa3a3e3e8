"""Who produces the predictions: the Dask workers for one at-least-once consumer, each consumer
its own with ``--consumers``, the driver under exactly-once."""

from __future__ import annotations

import pytest

from stream.errors import ConfigurationError
from stream.serve.worker import produce_on_workers
from stream.settings import ServeSettings


@pytest.mark.parametrize(
    ("produce_on", "guarantee", "consumers", "on_workers"),
    [
        ("auto", "at-least-once", 1, True),
        ("auto", "at-least-once", 4, False),  # one Dask worker would produce for all four
        ("auto", "exactly-once", 1, False),
        ("workers", "at-least-once", 4, True),  # asked for: as asked
        ("driver", "at-least-once", 1, False),
    ],
)
def test_auto_lets_the_workers_produce_for_one_at_least_once_consumer_only(
    produce_on: str, guarantee: str, consumers: int, on_workers: bool
) -> None:
    settings = ServeSettings(model="m@production", produce_on=produce_on, guarantee=guarantee, consumers=consumers)
    assert produce_on_workers(settings) is on_workers


def test_workers_cannot_produce_in_a_transaction() -> None:
    settings = ServeSettings(model="m@production", produce_on="workers", guarantee="exactly-once")
    with pytest.raises(ConfigurationError, match="a Kafka transaction has one producer"):
        produce_on_workers(settings)
