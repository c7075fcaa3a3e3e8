"""``knnstream serve``: the streaming prediction worker, from start-up checks to shutdown."""

from __future__ import annotations

import functools
import gc
import logging
import signal
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from types import FrameType
from typing import Any

from model_store import Manifest, ModelStore, ModelStoreError, parse_model_ref
from stream.backend import Backend, resolve_backend
from stream.errors import ConfigurationError
from stream.heap import freeze_startup_heap, spaced_out_collections
from stream.predict.cluster import (
    close_client,
    dashboard_url,
    serves_in_process,
    start_client,
    threads_per_worker,
    warn_if_short_of_threads,
)
from stream.predict.distributed import DaskPredictor
from stream.predict.follow import FollowMetrics, ModelFollower, parse_shadow
from stream.predict.gpu_memory import GpuMemoryMonitor
from stream.predict.plugin import FrozenHeapPlugin
from stream.predict.shared import fingerprint
from stream.serve.metrics import Health, MetricsServer, WorkerMetrics
from stream.serve.pipeline import Pipeline, PipelineConfig
from stream.settings import ServeSettings
from stream.settings.serve import who_produces
from stream.sink.admin import create_topics
from stream.sink.commit import AtLeastOnce, BatchCompleter, ExactlyOnce
from stream.sink.kafka import KafkaSink, producer_config, transactional_producer_config
from stream.sink.workers import ProducerPlugin, score_and_produce_on_worker
from stream.source.breaker import BadRecordBreaker
from stream.source.kafka import KafkaSource

log = logging.getLogger(__name__)


class StopSignal:
    """Set by SIGTERM or SIGINT; the consume loop stops after the batch in flight."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the batch in flight, then stopping", signal.Signals(signum).name)
        self._event.set()


def serve(settings: ServeSettings, stop: StopSignal | None = None) -> None:
    """Run the worker until stopped; every start-up problem raises a ConfigurationError."""
    if stop is None:
        stop = StopSignal()
        stop.install()
    backend = resolve_backend(settings.backend)
    on_workers = produce_on_workers(settings)
    store = ModelStore(settings.store)
    manifest = _resolve_model(store, settings)
    metrics, health = WorkerMetrics(), Health()
    source = KafkaSource(settings, stats_cb=metrics.observe_consumer_stats)
    completer = _completer(settings, source, metrics.observe_stage)
    if settings.create_topics:
        create_topics(settings.librdkafka_config(), [settings.input_topic, settings.output_topic, settings.dlq_topic])
    source.check_topics([settings.input_topic, settings.output_topic, settings.dlq_topic])
    server = MetricsServer(metrics, health, settings.metrics_host, settings.metrics_port)
    server.start()  # /healthz answers 503 until the consume loop runs
    try:
        threads = threads_per_worker(settings.max_batches_in_flight, settings.consumers)
        in_process = serves_in_process(backend, settings.scheduler, settings.dask_workers, settings.local_dask_workers)
        client = start_client(
            backend,
            settings.scheduler,
            settings.dask_workers,
            settings.rmm_pool_size,
            threads,
            settings.dashboard_address,
            in_process,
        )
    except BaseException:
        server.stop()
        raise
    gpu_memory = GpuMemoryMonitor(client, metrics.observe_gpu_memory) if backend == "gpu" else None
    try:
        warn_if_short_of_threads(client, threads)
        if gpu_memory is not None:
            gpu_memory.start()
        predictor = DaskPredictor(
            client, backend, settings.input_format, settings.max_batches_in_flight, settings.probabilities
        )
        client.register_plugin(FrozenHeapPlugin(backend))  # first: before any model loads
        if on_workers:
            config = producer_config(settings)
            made_from = fingerprint({**config, "delivery_timeout_s": settings.delivery_timeout_s})
            predictor.share(ProducerPlugin(config, settings.delivery_timeout_s), made_from)
        follower = _follower(settings, store, predictor, backend, manifest, metrics)
        follower.start(manifest)
        log.info(
            "serving %s (version %s) from %s to %s on the %s backend; metrics on port %d; Dask dashboard at %s",
            settings.model,
            manifest.version,
            settings.input_topic,
            settings.output_topic,
            backend,
            server.port,
            dashboard_url(client),
        )
        pipeline = Pipeline(
            _pipeline_config(settings, manifest.n_features),
            predictor.predict,
            completer,
            source.rewind,
            BadRecordBreaker(settings.bad_ratio_limit, settings.bad_ratio_window, settings.bad_run_limit),
            metrics,
            on_prediction=follower.observe,
            predict_lines=None if on_workers else predictor.score_lines,
            produce_lines=functools.partial(predictor.produce_lines, task=score_and_produce_on_worker)
            if on_workers
            else None,
        )
        source.track(pipeline.in_flight)
        # A message per record, alive until its batch is committed: collections spaced out, and
        # timed from the start-up's last one on.
        with metrics.collections.timing(), spaced_out_collections():
            if in_process:  # the Dask worker in this process froze the heap before the model loaded
                gc.collect()  # what start-up left behind; the model stays unfrozen, so a replaced one can go
            else:
                freeze_startup_heap()  # the driver holds no model: everything made so far lives as long as it
            _consume_until_stopped(source, pipeline, follower, health, metrics, stop)
    finally:
        if gpu_memory is not None:
            gpu_memory.stop()
        source.close()
        completer.close()
        server.stop()
        close_client(client)
    log.info("stopped cleanly")


def _follower(
    settings: ServeSettings,
    store: ModelStore,
    predictor: DaskPredictor,
    backend: Backend,
    manifest: Manifest,
    metrics: WorkerMetrics,
) -> ModelFollower:
    try:
        served, shadow = parse_model_ref(settings.model), parse_shadow(settings.shadow)
    except ModelStoreError as exc:
        raise ConfigurationError(str(exc)) from exc
    return ModelFollower(
        store,
        served,
        shadow,
        predictor,
        backend,
        manifest.n_features,
        FollowMetrics(metrics.registry),
        on_switch=lambda switched: metrics.set_model(switched.name, switched.version),
        interval_s=settings.model_poll_interval_s,
        max_batch_rows=settings.batch_max_records,
    )


def _consume_until_stopped(
    source: KafkaSource,
    pipeline: Pipeline,
    follower: ModelFollower,
    health: Health,
    metrics: WorkerMetrics,
    stop: StopSignal,
) -> None:
    def wait_paused(in_flight: Future[Any]) -> None:
        source.wait_paused(in_flight, on_tick=health.beat)

    def settle() -> None:  # before a model switch: the batches in flight are done with the old version
        pipeline.drain(wait_paused)

    pipeline.start()
    try:
        while not stop.is_set():
            health.beat()
            metrics.mark_progress()
            follower.maybe_switch(settle)
            batch = None
            if not pipeline.full():
                # With batches under way, come back soon to commit them, and commit those
                # delivered while the next batch fills.
                under_way = bool(pipeline.in_flight())
                batch = source.next_batch(
                    idle_wait_s=0.05 if under_way else 0.5,
                    between_polls=pipeline.commit_delivered if under_way else None,
                )
                if batch is not None:
                    pipeline.submit(batch)
            pipeline.complete(wait_paused, block=pipeline.full() or batch is None)
        pipeline.drain(wait_paused)
    finally:
        pipeline.close()


def _completer(settings: ServeSettings, source: KafkaSource, observe: Callable[[str, float], None]) -> BatchCompleter:
    if settings.guarantee == "exactly-once":
        transactional_id = settings.transactional_id or f"knnstream-{settings.group_id}-{uuid.uuid4().hex[:12]}"
        return ExactlyOnce(
            transactional_producer_config(settings, transactional_id),
            source.group_metadata,
            settings.delivery_timeout_s,
            observe=observe,
        )
    return AtLeastOnce(KafkaSink.for_settings(settings), source.commit, observe)


def produce_on_workers(settings: ServeSettings) -> bool:
    """Whether the Dask workers produce the predictions (:func:`stream.settings.serve.who_produces`)."""
    if settings.guarantee == "exactly-once" and settings.produce_on == "workers":
        raise ConfigurationError(
            "--produce-on workers cannot be exactly-once: a Kafka transaction has one producer"
            " (use --produce-on driver)"
        )
    return who_produces(settings.produce_on, settings.guarantee, settings.consumers) == "workers"


def _resolve_model(store: ModelStore, settings: ServeSettings) -> Manifest:
    try:
        manifest = store.resolve(settings.model)
    except ModelStoreError as exc:
        raise ConfigurationError(str(exc)) from exc
    if settings.expected_features is not None and settings.expected_features != manifest.n_features:
        raise ConfigurationError(
            f"the input has {settings.expected_features} features per record (--expected-features),"
            f" but model {manifest.name}:{manifest.version} takes {manifest.n_features}"
        )
    return manifest


def _pipeline_config(settings: ServeSettings, n_features: int) -> PipelineConfig:
    return PipelineConfig(
        input_topic=settings.input_topic,
        output_topic=settings.output_topic,
        dlq_topic=settings.dlq_topic,
        n_features=n_features,
        max_record_bytes=settings.max_record_bytes,
        max_consecutive_failures=settings.max_batch_retries,
        max_in_flight=settings.max_batches_in_flight,
        input_format=settings.input_format,
    )
