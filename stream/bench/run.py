"""``knnstream bench``: how close the whole pipeline comes to the model's raw predict speed.

One run on one machine measures
  (a) raw predict throughput: every Dask worker predicts batches of the benchmark's size with
      the served model, concurrently, data already on the worker — the ceiling;
  (b) end-to-end throughput: a backlog of records in the input topic until every prediction is
      acknowledged in the output topic, through ``knnstream serve`` as deployed;
  (c) end-to-end latency p50/p99 at a fixed offered load of half of (b);
  (t) the transport's own limit: a plain consume → decode → encode → produce → commit loop over
      the same backlog, with no prediction (:mod:`stream.bench.transport`), before the worker starts;
and prints (b)/(a) and (b)/(t).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Producer

from stream.backend import Backend, resolve_backend
from stream.bench.backlog import Burst, start_burst, wait_group_settled
from stream.bench.data import bench_data
from stream.bench.gpus import GpuSampler
from stream.bench.host import bench_processes
from stream.bench.load import (
    BatchStats,
    batch_stats,
    bench_records,
    latency_phase,
    settled_batch_totals,
)
from stream.bench.output import OutputReader
from stream.bench.progress import ProgressSampler
from stream.bench.raw import publish_index, raw_throughput
from stream.bench.replicas import CpuSeconds, Replicas, start_replicas
from stream.bench.report import BenchResult, format_table
from stream.bench.soak import SoakResult, soak
from stream.bench.stages import stage_seconds, stage_seconds_between
from stream.bench.transport import TransportLoop, transport_loop
from stream.demo.kafka_admin import start_local_broker, stop_local_broker, temporary_topics
from stream.demo.local_worker import SCRAPE_TIMEOUT_S, cpu_seconds_of
from stream.demo.produce import send
from stream.heap import freeze_startup_heap
from stream.predict.cluster import visible_gpus
from stream.settings import BenchSettings
from stream.settings.serve import who_produces
from stream.sink.admin import broker_reachable
from stream.train.indexing import describe_index

SOAK_WINDOW_S = 30.0


@dataclass(frozen=True)
class Backlog:
    """What the backlog measured, from its release to its last prediction read."""

    rows_per_s: float
    first_prediction_s: float
    after_first_rows_per_s: float
    decoded_on_driver: int
    driver_gc_s: float
    cpu: CpuSeconds  # of the workers' processes
    predicted_by_replica: tuple[int, ...]  # records each consumer of each replica predicted (and committed)
    sent_s: float  # the burst, from its release to the last record acknowledged of its last sender
    bench_cpu_s: float  # the benchmark's process and its reader's (reading the predictions, sampling GPUs, progress)
    gpus: tuple[str, ...]  # what each GPU did (GPU backend)
    progress: tuple[tuple[float, ...], ...]  # every half second: predictions read, then each replica's predicted
    replica_gpus: tuple[str, ...]  # each replica's CUDA_VISIBLE_DEVICES (empty: every GPU, or the CPU backend)
    stages: tuple[str, ...]  # seconds in each stage, where/stage=seconds (stream.bench.stages)
    host_busy: float  # the share of the host's core time spent busy (stream.bench.host)


@dataclass(frozen=True)
class FixedLoad:
    """What the fixed load (half the backlog's rate) measured."""

    offered_rows_per_s: float
    p50_ms: float
    p99_ms: float
    batches: BatchStats


@dataclass(frozen=True)
class EndToEnd:
    backlog: Backlog
    load: FixedLoad
    soaked: SoakResult | None
    transport: TransportLoop  # the plain loop's rate and CPU (stream.bench.transport)


def run_bench(settings: BenchSettings, cuda_visible_devices: str | None = None) -> BenchResult:
    """One run; ``cuda_visible_devices``: this process's ``CUDA_VISIBLE_DEVICES``, shared out among
    the replicas on the GPU backend (every GPU of the host when unset)."""
    backend = resolve_backend(settings.backend)
    started_broker = False
    if not broker_reachable(settings.bootstrap_servers):
        start_local_broker(settings.bootstrap_servers)
        started_broker = True
    try:
        data = bench_data(settings)
        settings = settings.model_copy(update={"index_rows": len(data.features), "features": data.features.shape[1]})
        with tempfile.TemporaryDirectory(prefix="knnstream-bench-") as workdir:
            store, index = publish_index(settings, backend, Path(workdir), data)
            raw = raw_throughput(settings, backend, store, data.queries)
            gpus = visible_gpus(cuda_visible_devices) if backend == "gpu" and settings.replicas > 1 else []
            e2e = _end_to_end(settings, backend, store, gpus)
    finally:
        if started_broker:
            stop_local_broker(settings.bootstrap_servers)
    backlog, load = e2e.backlog, e2e.load
    result = BenchResult(
        backend, settings.index_rows, settings.features, settings.k, settings.batch_size, settings.records,
        settings.partitions, settings.workers, raw, backlog.rows_per_s, backlog.rows_per_s / raw,
        load.offered_rows_per_s, load.p50_ms, load.p99_ms,
        f"{platform.node()} ({platform.machine()}, {_device_name(backend)})", time.strftime("%Y-%m-%d"),
        *_soak_fields(e2e.soaked), produce_on=who_produces(settings.produce_on, "at-least-once", settings.consumers),
        max_batches_in_flight=settings.max_batches_in_flight, batch_max_wait_ms=settings.batch_max_wait_ms,
        format=settings.format,
        first_prediction_s=backlog.first_prediction_s, e2e_after_first_rows_per_s=backlog.after_first_rows_per_s,
        backlog_decoded_on_driver=backlog.decoded_on_driver, backlog_driver_gc_s=round(backlog.driver_gc_s, 3),
        backlog_driver_cpu_s=round(backlog.cpu.drivers, 2), backlog_dask_cpu_s=round(backlog.cpu.dask_workers, 2),
        replicas=settings.replicas, consumers=settings.consumers,
        backlog_predicted_by_replica=backlog.predicted_by_replica,
        backlog_sent_s=round(backlog.sent_s, 3), backlog_bench_cpu_s=round(backlog.bench_cpu_s, 2),
        backlog_gpus=backlog.gpus, backlog_progress=backlog.progress, replica_gpus=backlog.replica_gpus,
        latency_batches=load.batches.batches, latency_batch_records_mean=round(load.batches.records_mean, 1),
        latency_batch_ms_mean=round(load.batches.batch_ms_mean, 1),
        latency_predict_ms_mean=round(load.batches.predict_ms_mean, 1),
        transport_rows_per_s=e2e.transport.rows_per_s, backlog_stage_seconds=backlog.stages,
        e2e_over_transport=backlog.rows_per_s / e2e.transport.rows_per_s, transport_cpu_s=round(e2e.transport.cpu_s, 2),
        transport_first_commit_s=e2e.transport.first_commit_s, transport_progress=e2e.transport.course,
        backlog_host_busy=backlog.host_busy, transport_host_busy=e2e.transport.host_busy,
        backlog_senders=bench_processes(settings.backlog_senders),
        output_readers=bench_processes(settings.output_readers),
        index=describe_index(index), recall=round(float(index["recall"]), 4), data_kind=_data_kind(settings),
    )  # fmt: skip
    print(json.dumps(asdict(result)) if settings.json_output else format_table(result), flush=True)
    return result


def _data_kind(settings: BenchSettings) -> str:
    return f"table {settings.data}" if settings.data else settings.data_kind


def _end_to_end(settings: BenchSettings, backend: Backend, store: str, gpus: Sequence[str]) -> EndToEnd:
    suffix = uuid.uuid4().hex[:8]
    topics = {"input": f"bench-in-{suffix}", "output": f"bench-out-{suffix}", "dlq": f"bench-dlq-{suffix}"}
    loop = {"input": f"bench-transport-in-{suffix}", "output": f"bench-transport-out-{suffix}"}
    partitions = {topics["input"]: settings.partitions, topics["output"]: settings.partitions, topics["dlq"]: 1}
    partitions |= {loop["input"]: settings.partitions, loop["output"]: settings.partitions}
    with temporary_topics(settings.bootstrap_servers, partitions):  # hundreds of MiB of throwaway records
        transport = transport_loop(settings, loop["input"], loop["output"])  # before the worker starts
        return _stream_through_worker(settings, backend, store, topics, suffix, gpus, transport)


def _stream_through_worker(
    settings: BenchSettings,
    backend: Backend,
    store: str,
    topics: dict[str, str],
    suffix: str,
    gpus: Sequence[str],
    transport: TransportLoop,
) -> EndToEnd:
    """A backlog through ``knnstream serve`` (its rate), then a fixed load (latency), then the soak."""
    with ExitStack() as cleanup:  # closed in reverse: the replicas, the reader, the burst's processes
        burst = start_burst(
            settings.bootstrap_servers, topics["input"], settings.records, settings.features, settings.format,
            senders=bench_processes(settings.backlog_senders),
        )  # fmt: skip
        cleanup.callback(burst.close)
        reader = OutputReader(settings.bootstrap_servers, topics["output"], bench_processes(settings.output_readers))
        cleanup.callback(reader.close)
        reader.wait_until_assigned(timeout_s=60)
        group_id = f"bench-{suffix}"
        replicas = start_replicas(settings, backend, store, topics, group_id, gpus)
        cleanup.callback(replicas.stop)
        replicas.wait_healthy()
        wait_group_settled(settings.bootstrap_servers, group_id, len(replicas.ports), settings.partitions)
        burst.wait_ready()
        return _measure(settings, backend, replicas, burst, reader, topics["input"], transport)


def _measure(
    settings: BenchSettings,
    backend: Backend,
    replicas: Replicas,
    burst: Burst,
    reader: OutputReader,
    topic: str,
    transport: TransportLoop,
) -> EndToEnd:
    """The backlog's rate, then latency at half of it, then the soak."""
    backlog = _run_backlog(settings, backend, replicas, burst, reader)
    load = _fixed_load(settings, replicas, reader, topic, backlog.rows_per_s / 2)
    soaked = None
    if settings.soak_seconds > 0:
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20})
        window = _soak_window(settings, producer, topic, reader, load.offered_rows_per_s)
        soaked = soak(window, replicas.processes[0].pid, settings.soak_seconds, SOAK_WINDOW_S)
    return EndToEnd(backlog, load, soaked, transport)


def _run_backlog(
    settings: BenchSettings, backend: Backend, replicas: Replicas, burst: Burst, reader: OutputReader
) -> Backlog:
    """The clock starts when the backlog's burst is released to the waiting workers and stops at
    its last prediction read; the workers' CPU and metrics, the GPUs and the course around it."""
    decoded, gc_seconds = "knnstream_records_decoded_on_driver_total", "knnstream_gc_seconds_total"
    at_start = replicas.totals([gc_seconds])  # the start-up's collections are not the backlog's
    cpu_at_start, bench_cpu_at_start = replicas.cpu_seconds(), _own_cpu_seconds(reader)
    stages_at_start = stage_seconds(replicas.ports)
    sampler = GpuSampler()
    if backend == "gpu":
        sampler.start()
    progress = ProgressSampler(
        lambda: replicas.totals_each("knnstream_records_predicted_total"),
        lambda: reader.count,
        join_timeout_s=SCRAPE_TIMEOUT_S * len(replicas.ports) + 5,  # a scrape of each replica under way
    )
    progress.start()
    try:
        timed = burst.release_until_read(
            reader, settings.records, timeout_s=1800, failed=lambda: burst.failure() or replicas.failure()
        )
    finally:
        gpu_lines, course = sampler.stop(), progress.stop()
    cpu, bench_cpu_s = replicas.cpu_seconds() - cpu_at_start, _own_cpu_seconds(reader) - bench_cpu_at_start
    first, last = min(reader.received_at.values()), max(reader.received_at.values())
    settled_batch_totals(replicas.ports)  # the last batches are read before they are counted as committed
    totals = replicas.totals([decoded, gc_seconds])
    predicted = tuple(int(total) for total in replicas.totals_each("knnstream_records_predicted_total"))
    stages = stage_seconds_between(stages_at_start, stage_seconds(replicas.ports))
    return Backlog(
        settings.records / timed.seconds, first - timed.at,
        (settings.records - 1) / (last - first) if last > first else 0.0, int(totals[decoded]),
        totals[gc_seconds] - at_start[gc_seconds], cpu, predicted, burst.wait_sent(), bench_cpu_s, gpu_lines,
        course, tuple(replicas.devices), stages, timed.host_busy,
    )  # fmt: skip


def _fixed_load(
    settings: BenchSettings, replicas: Replicas, reader: OutputReader, topic: str, offered: float
) -> FixedLoad:
    """Records sent at ``offered`` a second for ``latency_seconds``: each one's latency, and the
    worker's batches meanwhile."""
    # They leave at once (linger.ms 1): the batching measured is the worker's.
    paced = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 1})
    records = bench_records(settings.features, "l", max(1, int(offered * settings.latency_seconds)))
    freeze_startup_heap()  # the bench's own garbage collections must not show up as latency
    before = settled_batch_totals(replicas.ports)
    latencies = latency_phase(paced, topic, reader, records, offered, settings.format)
    batches = batch_stats(before, settled_batch_totals(replicas.ports))
    p50, p99 = np.percentile(latencies, [50, 99])
    return FixedLoad(offered, float(p50), float(p99), batches)


def _own_cpu_seconds(reader: OutputReader) -> float:
    """CPU seconds of this process and of ``reader``'s so far (during the backlog: reading the
    predictions, taking them in, sampling the GPUs and the progress)."""
    return cpu_seconds_of(psutil.Process()) + reader.cpu_seconds()


def _soak_window(
    settings: BenchSettings, producer: Producer, topic: str, reader: OutputReader, rate: float
) -> Callable[[int], None]:
    """Window n: ``rate`` records a second for ``SOAK_WINDOW_S`` seconds, until all are predicted."""

    def run(number: int) -> None:
        reader.forget()
        records = bench_records(settings.features, f"s{number}-", max(1, int(rate * SOAK_WINDOW_S)))
        send(producer, topic, records, rate, input_format=settings.format)
        reader.wait_for(len(records), timeout_s=600)

    return run


def _soak_fields(soaked: SoakResult | None) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    if soaked is None:
        return 0.0, (), ()
    rounded = [tuple(round(mib, 1) for mib in samples) for samples in (soaked.worker_rss_mib, soaked.tree_rss_mib)]
    return soaked.seconds, rounded[0], rounded[1]


def _device_name(backend: Backend) -> str:
    if backend == "gpu":
        try:
            import pynvml

            pynvml.nvmlInit()
            return str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
        except Exception:  # noqa: BLE001 - the name is decoration; the figures stand without it
            return "GPU"
    return f"{platform.processor() or 'CPU'}, {_cpu_count()} cores"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main_bench(settings: BenchSettings) -> int:
    run_bench(settings, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return 0


if __name__ == "__main__":
    sys.exit(main_bench(BenchSettings()))
