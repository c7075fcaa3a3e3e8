"""In-memory stand-ins for unit tests of pure transforms (never for Kafka itself)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeMessage:
    """The part of ``confluent_kafka.Message`` that decoding and encoding read."""

    _value: bytes | None
    offset_: int = 0
    topic_: str = "features"
    partition_: int = 0
    key_: bytes | None = None

    def __init__(
        self,
        value: bytes | None,
        offset: int = 0,
        topic: str = "features",
        partition: int = 0,
        key: bytes | None = None,
    ) -> None:
        self._value, self.offset_, self.topic_, self.partition_, self.key_ = value, offset, topic, partition, key

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self.key_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_
