"""The pipeline's types (:mod:`stream.serve.pipeline`): its configuration, the callables it is given,
its errors, and what a micro-batch becomes on its way through it.

MicroBatch → DecodedStage → PredictedStage → EncodedStage, carried by a BatchJob
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stream.batching.microbatch import MicroBatch
from stream.errors import KnnStreamError
from stream.predict.distributed import ProducedParts, ScoredParts
from stream.records.decode import DeadLetter, DecodedBatch
from stream.records.encode import Outbound
from stream.settings import InputFormat

Wait = Callable[["Future[Any]"], None]
# Raw values (in the input format), their keys and the feature count → the parts being parsed and
# predicted by the Dask workers; their outcome is None when a record is not clean (then the batch
# is decoded here and its bad records dead-lettered).
PredictLines = Callable[[list[bytes], list["bytes | None"], int], ScoredParts]
# Raw values (in the input format), their keys, the feature count and the output topic → the parts
# being scored and produced by the Dask workers (a part not clean is left to the driver).
ProduceLines = Callable[[list[bytes], list["bytes | None"], int, str], ProducedParts]


@dataclass(frozen=True)
class PipelineConfig:
    input_topic: str
    output_topic: str
    dlq_topic: str
    n_features: int
    max_record_bytes: int
    max_consecutive_failures: int = 20
    retry_backoff_s: float = 0.5
    max_backoff_s: float = 5.0
    max_in_flight: int = 2
    input_format: InputFormat = "json"


class BatchFailedError(KnnStreamError):
    """A batch failed more often in a row than the worker tolerates."""


class BatchRefusedError(KnnStreamError):
    """Not delivered because an earlier batch failed: it is processed again after the rewind."""


@dataclass(frozen=True)
class DecodedStage:
    """Either the raw values and keys (parsed on the Dask workers) or the batch decoded here."""

    batch: MicroBatch
    values: list[bytes] | None
    decoded: DecodedBatch | None
    keys: list[bytes | None] | None = None

    def __post_init__(self) -> None:
        if (self.values is None) != (self.keys is None):
            raise ValueError("raw values go to the workers with their keys, or neither does")


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
    probabilities: Any = None  # each row's JSON object of class probabilities, when asked for
    keys: Sequence[bytes | None] | None = None  # the keys of ``scored``, when the decode stage read them
    scoring: ScoredParts | None = None  # set while the workers parse and predict the batch's raw values


@dataclass(frozen=True)
class EncodedStage:
    """The records the driver delivers; with ``produced`` set, the workers deliver the batch's
    clean parts and the driver whatever of their outcome is left (:meth:`Pipeline._finish_produced`)."""

    batch: MicroBatch
    outbound: Outbound
    scored: int
    dead_letters: Sequence[DeadLetter]
    produced: ProducedParts | None = None
    awaiting: PredictedStage | None = None  # its prediction under way: encoded once it is back


@dataclass(frozen=True)
class BatchJob:
    """One batch on its way: prepared on one thread, delivered on the other (``done`` holds what
    was delivered), committed last."""

    batch: MicroBatch
    prepared: Future[EncodedStage]
    done: Future[EncodedStage] = field(default_factory=Future)
