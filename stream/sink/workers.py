"""Producing predictions from the Dask workers, as a ``WorkerPlugin``.

With ``--produce-on workers`` each Dask worker produces the predictions of the records it
scored, with a producer of its own, and a scoring task returns only once the broker has
acknowledged them. The driver then consumes and commits, and the per-record work of encoding
and producing is spread over the workers' processes instead of queueing behind one Python
interpreter. The commit order does not change: the driver commits a batch's offsets only after
every task of the batch returned (so after the acknowledgements), and a failed task fails the
batch, which is consumed again (at-least-once).

The plugin travels as the producer's configuration; each worker builds its producer when the
plugin is set up on it, so that it is connected before the first batch. Deliveries on one worker
take turns (one :class:`KafkaSink` reports the failures of one batch at a time), while the next
batch's prediction goes on beside them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from distributed import WorkerPlugin, get_worker

from stream.predict.tasks import ScoredLines, score_lines_on_worker
from stream.records.encode import encode_values, prediction_headers
from stream.settings import InputFormat
from stream.sink.kafka import DeliveryTimes, KafkaSink

PLUGIN_NAME = "knnstream-producer"
log = logging.getLogger(__name__)


class ProducerPlugin(WorkerPlugin):
    """Holds one Kafka producer on a Dask worker, built at setup, flushed at teardown."""

    name = PLUGIN_NAME

    def __init__(self, producer_config: Mapping[str, Any], delivery_timeout_s: float) -> None:
        self.producer_config = dict(producer_config)
        self.delivery_timeout_s = delivery_timeout_s
        self._sink: KafkaSink | None = None
        self._turn: threading.Lock | None = None

    def setup(self, worker: Any) -> None:
        sink = KafkaSink(self.producer_config, self.delivery_timeout_s)
        sink.start()  # connected, with its producer id, before the first batch
        self._sink, self._turn = sink, threading.Lock()

    def teardown(self, worker: Any) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    @property
    def started(self) -> bool:
        """Whether this worker's producer is built (from the plugin's setup on)."""
        return self._sink is not None and self._sink.started

    def deliver(
        self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes], headers: Sequence[tuple[str, bytes]]
    ) -> DeliveryTimes:
        """Produce and wait for the acknowledgements; raises :class:`~stream.errors.DeliveryError`."""
        if self._sink is None or self._turn is None:
            raise RuntimeError("the knnstream producer plugin is not set up on this worker")
        with self._turn:
            return self._sink.deliver_values(topic, keys, values, headers)


def worker_producer(worker: Any = None) -> ProducerPlugin:
    """The producer plugin of ``worker`` (default: the worker running this task)."""
    plugin = (worker or get_worker()).plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, ProducerPlugin):
        raise RuntimeError("this Dask worker holds no knnstream producer (--produce-on workers)")
    return plugin


def score_and_produce_on_worker(
    payload: bytes,
    keys: pa.Array,
    n_features: int,
    version: str,
    shadow_version: str | None,
    output_topic: str,
    input_format: InputFormat = "json",
    probabilities: bool = False,
) -> ScoredLines | None:
    """Dask task: :func:`score_lines_on_worker`, then produce one prediction per record (keyed
    like its input record: ``keys`` is an Arrow binary array) with this worker's producer, and
    return once the broker has them.

    ``None`` (nothing produced) when a record is not clean. The returned results carry no ids:
    only the predictions travel back, for the driver's shadow comparison.
    """
    scored = score_lines_on_worker(payload, keys, n_features, version, shadow_version, input_format, probabilities)
    if scored is None:
        return None
    predicted = scored.predicted
    started = time.perf_counter()
    values = encode_values(
        scored.ids,
        predicted["prediction"].to_numpy(),
        predicted["distance"].to_numpy(),
        version,
        predicted.get("probabilities"),
    )
    encoded = time.perf_counter()
    times = worker_producer().deliver(output_topic, keys.to_pylist(), values, prediction_headers(version))
    delivery = (("encode", encoded - started), ("produce", times.produce_s), ("acknowledge", times.acknowledge_s))
    return ScoredLines(pa.array([], pa.string()), predicted, scored.shadow, scored.seconds + delivery)
