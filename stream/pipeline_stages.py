"""What a micro-batch becomes on its way through the pipeline (:mod:`stream.pipeline`).

MicroBatch → DecodedStage → PredictedStage → EncodedStage, carried by a BatchJob
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stream.batching.microbatch import MicroBatch
from stream.predict.distributed import ProducedParts
from stream.sink.encode import OutboundRecord
from stream.source.decode import DeadLetter, DecodedBatch


@dataclass(frozen=True)
class DecodedStage:
    """Either the raw one-line values (parsed on the Dask workers) or the batch decoded here."""

    batch: MicroBatch
    values: list[bytes] | None
    decoded: DecodedBatch | None


@dataclass(frozen=True)
class PredictedStage:
    batch: MicroBatch
    scored: Sequence[Any]  # the messages predicted, in the order of the rows
    ids: pa.Array
    predictions: Any  # host array
    distances: Any  # host array
    model_version: str
    dead_letters: Sequence[DeadLetter]
    produced: ProducedParts | None = None  # set when the workers score and produce the batch


@dataclass(frozen=True)
class EncodedStage:
    """The records the driver delivers; with ``produced`` set, the workers deliver the batch's
    clean parts and the driver whatever of their outcome is left (:meth:`Pipeline._finish_produced`)."""

    batch: MicroBatch
    records: list[OutboundRecord]
    scored: int
    dead_letters: Sequence[DeadLetter]
    produced: ProducedParts | None = None


@dataclass(frozen=True)
class BatchJob:
    """One batch on its way: prepared on one thread, delivered on the other (``done`` holds what
    was delivered), committed last."""

    batch: MicroBatch
    prepared: Future[EncodedStage]
    done: Future[EncodedStage] = field(default_factory=Future)
