"""Stand-ins of the pipeline tests: batches of JSON records, a recording completer, a scripted
model, a recording rewind."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pandas as pd

from stream.batching.microbatch import MicroBatch
from stream.predict.distributed import Prediction
from stream.records.encode import Outbound
from tests.fakes import FakeMessage


def _batch(first_offset: int, size: int = 3) -> MicroBatch:
    offsets = range(first_offset, first_offset + size)
    values = [json.dumps({"id": f"r{o}", "features": [float(o), 1.0]}).encode() for o in offsets]
    return MicroBatch([FakeMessage(v, offset=o) for o, v in zip(offsets, values, strict=True)])


class RecordingCompleter:
    """Stands in for the Kafka completer: records what was delivered and committed, in order."""

    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.committed: list[int] = []

    def start(self) -> None:
        pass

    def deliver(self, batch: MicroBatch, outbound: Outbound) -> None:
        self.delivered.append(batch.messages[0].offset())

    def commit(self, batch: MicroBatch) -> None:
        self.committed.append(batch.messages[0].offset())

    def close(self) -> None:
        pass


class ScriptedModel:
    """Predicts the first feature; the batch starting at ``fail_at`` fails, the one at
    ``hold_at`` waits for ``release``."""

    def __init__(self, fail_at: int | None = None, hold_at: int | None = None) -> None:
        self.fail_at, self.hold_at = fail_at, hold_at
        self.release = threading.Event()

    def predict(self, features: np.ndarray) -> Prediction:
        first = int(features[0, 0])
        if first == self.hold_at:
            assert self.release.wait(10)
        if first == self.fail_at:
            raise RuntimeError(f"predict failed at {first}")
        frame = pd.DataFrame({"prediction": features[:, 0].astype(int), "distance": np.zeros(len(features))})
        return Prediction("v1", frame)


def _recording(rewound: list[int]) -> Callable[[Sequence[MicroBatch]], None]:
    """A rewind that notes the first offset of each batch it is given."""
    return lambda batches: rewound.extend(batch.messages[0].offset() for batch in batches)


def _wait(future: Future[Any]) -> None:
    future.exception(timeout=10)
