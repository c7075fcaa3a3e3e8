"""``knnstream serve --consumers N``: N consumers of one consumer group sharing one Dask cluster.

One consumer is one Python interpreter: its polling, batching, commits and Dask client share
one lock, and it runs at most about one core. Threads in one process would share that lock, so
the consumers are processes. This process starts the Dask cluster (or connects to
``--scheduler``), then N consumer processes that connect to it as clients, each
:func:`stream.serve.worker.serve` in the same group; Kafka shares the partitions out among them,
and each partition is read, delivered and committed in order by one of them at a time, under
either guarantee. The model is loaded once on the shared workers (:mod:`stream.predict.shared`).

The consumers are ``multiprocessing`` processes started with *spawn*: each is a fresh
interpreter that gets the one frozen settings object as it is, pickled over the pipe spawn
opens (no flags spelled again for a command line, no password on one), and sends back its
error. Not *fork*: this process runs the Dask cluster's threads and event loop, which a forked
child would inherit in whatever state they were at that moment.

This process supervises them: SIGTERM or SIGINT stops every consumer as it stops one serve
(the batches in flight delivered and committed) and the command exits 0; a consumer that exits
otherwise stops the others and the command fails, naming it. The local cluster is closed last.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from stream.backend import Backend, resolve_backend
from stream.errors import KnnStreamError
from stream.logs import configure_logging
from stream.predict.cluster import close_client, dashboard_url, start_client, threads_per_worker
from stream.serve.worker import StopSignal, serve
from stream.settings import ServeSettings
from stream.sink.admin import cluster_metadata, create_topics
from stream.source.kafka import KafkaSource

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.2  # how soon a stop signal or an exited consumer is seen
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class ConsumerFailedError(KnnStreamError):
    """A consumer of ``serve --consumers`` exited while the others were serving, or failed to stop."""


@dataclass
class ConsumerProcess:
    """One consumer: its process, and the pipe its error comes back on."""

    index: int
    count: int
    process: BaseProcess
    errors: Connection
    metrics_port: int

    def stop(self) -> None:
        """SIGTERM: the consumer stops after its batches in flight, as ``serve`` does."""
        if self.process.exitcode is None and self.process.pid is not None:
            self.process.terminate()

    def failure(self, stopping: bool) -> str | None:
        """Why it exited (``None`` when it exited 0 on a stop)."""
        code = self.process.exitcode
        if code == 0 and stopping:
            return None
        try:
            reason = self.errors.recv() if self.errors.poll() else ""
        except EOFError:  # it exited before it could say why
            reason = ""
        if code == 0:
            how = "stopped on its own"
        elif code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        named = f"consumer {self.index} of {self.count} (pid {self.process.pid}) {how}"
        return f"{named}: {reason}" if reason else named


def serve_consumers(settings: ServeSettings, stop: StopSignal | None = None) -> None:
    """Run ``settings.consumers`` consumers on one Dask cluster until stopped; raises
    :class:`ConsumerFailedError` when one of them failed (the others stopped)."""
    if stop is None:
        stop = StopSignal()
        stop.install()
    backend = resolve_backend(settings.backend)
    _check_topics(settings)
    threads = threads_per_worker(settings.max_batches_in_flight, settings.consumers)
    client = start_client(
        backend, settings.scheduler, settings.dask_workers, settings.rmm_pool_size, threads, settings.dashboard_address
    )
    try:
        address = str(client.scheduler_info()["address"])
        consumers = [] if stop.is_set() else _start_consumers(settings, backend, address)
        log.info(
            "%d consumers of group %s share the Dask cluster at %s (dashboard at %s); metrics on %s",
            len(consumers),
            settings.group_id,
            address,
            dashboard_url(client),
            _ports(consumers),
        )
        failure = supervise(consumers, stop)
    finally:
        close_client(client)
    if failure is not None:
        raise ConsumerFailedError(failure)
    log.info("every consumer stopped cleanly")


def supervise(consumers: list[ConsumerProcess], stop: StopSignal) -> str | None:
    """Until a stop signal or the first consumer to exit; then stop the others and wait for
    each. The first failure, or ``None``."""
    failure = None
    while consumers and failure is None and not stop.is_set():
        wait([consumer.process.sentinel for consumer in consumers], timeout=WATCH_INTERVAL_S)
        exited = [consumer for consumer in consumers if consumer.process.exitcode is not None]
        if exited:
            failure = exited[0].failure(stopping=False)  # even an exit 0: nothing asked it to stop
    if failure is not None:
        log.error("%s: stopping the others", failure)
    for consumer in consumers:  # all at once: one at a time, each would hand its partitions to the next
        consumer.stop()
    for consumer in consumers:
        consumer.process.join()
    if failure is None:
        failure = next((why for why in (consumer.failure(stopping=True) for consumer in consumers) if why), None)
    return failure


def _check_topics(settings: ServeSettings) -> None:
    """The topics exist (created first with ``--create-topics``, here, not by each consumer);
    a warning when consumers would sit idle for want of partitions."""
    topics = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    if settings.create_topics:
        create_topics(settings.librdkafka_config(), topics)
    source = KafkaSource(settings)
    try:
        source.check_topics(topics)
    finally:
        source.close()
    partitions = len(cluster_metadata(settings.librdkafka_config()).topics[settings.input_topic].partitions)
    if settings.consumers > partitions:
        log.warning(
            "%d consumers for the %d partition(s) of %s: %d will sit idle (one consumer of a group reads a partition)",
            settings.consumers,
            partitions,
            settings.input_topic,
            settings.consumers - partitions,
        )


def _start_consumers(settings: ServeSettings, backend: Backend, scheduler: str) -> list[ConsumerProcess]:
    context = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().level)
    consumers: list[ConsumerProcess] = []
    try:
        for index in range(settings.consumers):
            own = consumer_settings(settings, index, backend, scheduler)
            errors, report = context.Pipe(duplex=False)
            process = context.Process(
                target=run_consumer, args=(own, index, level, report), name=f"knnstream-consumer-{index}"
            )
            # Blocked until the consumer has its handlers: a signal meanwhile stops it, not kills it.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            report.close()
            consumers.append(ConsumerProcess(index, settings.consumers, process, errors, own.metrics_port))
    except BaseException:
        supervise(consumers, _stopped())
        raise
    return consumers


def consumer_settings(settings: ServeSettings, index: int, backend: Backend, scheduler: str) -> ServeSettings:
    """Consumer ``index``'s settings: the shared cluster, its own metrics port (any free one for
    port 0) and, when one is given, its own transactional id (``ID-0``, ``ID-1``, ...)."""
    return settings.model_copy(
        update={
            "scheduler": scheduler,
            "backend": backend,
            "create_topics": False,
            "metrics_port": settings.metrics_port + index if settings.metrics_port else 0,
            "transactional_id": f"{settings.transactional_id}-{index}" if settings.transactional_id else None,
        }
    )


def run_consumer(settings: ServeSettings, index: int, log_level: str, report: Connection) -> None:
    """A consumer process's target: ``serve`` until stopped; its error goes back on ``report``."""
    stop = StopSignal()
    stop.install()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    configure_logging(log_level, process=f"consumer {index}")
    try:
        serve(settings, stop)
    except KnnStreamError as exc:
        log.error("consumer %d failed: %s", index, exc)
        report.send(str(exc))
        sys.exit(1)
    except Exception as exc:
        log.exception("consumer %d failed", index)
        report.send(f"{type(exc).__name__}: {exc}")
        sys.exit(1)


def _ports(consumers: list[ConsumerProcess]) -> str:
    if consumers and not consumers[0].metrics_port:
        return "any free port each (in each consumer's start-up line)"
    return "ports " + ", ".join(str(consumer.metrics_port) for consumer in consumers)


def _stopped() -> StopSignal:
    stopped = StopSignal()
    stopped.set()
    return stopped
