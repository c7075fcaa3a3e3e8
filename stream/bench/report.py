"""What one ``knnstream bench`` run found (:class:`BenchResult`, printed whole with ``--json``),
and the table it prints otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from stream.bench.progress import describe_moved, describe_progress


@dataclass(frozen=True)
class BenchResult:
    backend: str
    index_rows: int
    features: int
    k: int
    batch_size: int
    records: int
    partitions: int
    workers: int
    raw_rows_per_s: float
    e2e_rows_per_s: float
    ratio: float
    offered_rows_per_s: float
    p50_ms: float
    p99_ms: float
    machine: str
    date: str
    soak_seconds: float = 0.0
    soak_worker_rss_mib: tuple[float, ...] = ()  # at the end of each soak window
    soak_tree_rss_mib: tuple[float, ...] = ()
    produce_on: str = "workers"
    max_batches_in_flight: int = 2
    batch_max_wait_ms: int = 200
    format: str = "json"
    first_prediction_s: float = 0.0  # from the worker's readiness to the first prediction read
    e2e_after_first_rows_per_s: float = 0.0  # the backlog after its first prediction, over the time to its last
    backlog_decoded_on_driver: int = 0  # records of the backlog the workers did not parse (0: all parsed there)
    backlog_driver_gc_s: float = 0.0  # seconds the driver's garbage collector ran during the backlog
    backlog_driver_cpu_s: float = 0.0  # CPU seconds of the worker's own process (all replicas) during the backlog
    backlog_dask_cpu_s: float = 0.0  # CPU seconds of its Dask worker processes during the backlog
    replicas: int = 1  # knnstream serve processes in one consumer group
    consumers: int = 1  # consumer processes of each replica, sharing its Dask cluster (serve --consumers)
    backlog_predicted_by_replica: tuple[int, ...] = ()  # records each consumer of each replica predicted and committed
    backlog_sent_s: float = 0.0  # the backlog's burst, from its release to its last sender's last acknowledgement
    backlog_bench_cpu_s: float = 0.0  # CPU seconds of the benchmark's process and its reader's (reading, samplers)
    backlog_gpus: tuple[str, ...] = ()  # per GPU: utilisation, SM clock while working, what held its clocks down
    # every half second of the backlog: seconds, predictions read, then each replica's predicted records
    backlog_progress: tuple[tuple[float, ...], ...] = ()
    replica_gpus: tuple[str, ...] = ()  # each replica's CUDA_VISIBLE_DEVICES (none: one serve, or the CPU backend)
    latency_batches: int = 0  # the worker's micro-batches during the latency phase
    latency_batch_records_mean: float = 0.0
    latency_batch_ms_mean: float = 0.0  # a batch's first record consumed to its offsets committed
    latency_predict_ms_mean: float = 0.0  # per prediction on the Dask workers
    transport_rows_per_s: float = 0.0  # the plain consume → decode → encode → produce → commit loop, no prediction
    e2e_over_transport: float = 0.0  # (b) over the transport loop's rate: 1.0 is all the transport allows
    transport_cpu_s: float = 0.0  # CPU seconds of the transport loop's process for the backlog
    backlog_host_busy: float = 0.0  # the share of the host's core time spent busy during the backlog
    transport_host_busy: float = 0.0  # the same during the transport loop's backlog
    transport_first_commit_s: float = 0.0  # from the backlog's release to the loop's first batch committed
    # at each half second of the loop's backlog (the batch that crossed it): seconds, records moved
    transport_progress: tuple[tuple[float, int], ...] = ()
    # seconds the backlog spent in each stage, "where/stage=seconds" (driver: per batch; worker: per part, summed)
    backlog_stage_seconds: tuple[str, ...] = ()
    index: str = "brute"  # the model's neighbour index: kind, parameters, recall
    recall: float = 1.0  # recall@k against exact search, on the held-out queries
    data_kind: str = "blobs"  # generated rows (blobs, correlated) or the table benched
    backlog_senders: int = 1  # processes sending the backlogs' bursts (the worker's and the transport loop's)
    output_readers: int = 1  # processes reading the output topics, one consumer group


def format_table(result: BenchResult) -> str:
    rows = [
        ("backend", result.backend),
        ("index", f"{result.index_rows:,} x {result.features} ({result.data_kind}), k={result.k}"),
        ("  search", f"{result.index}; recall@{result.k} {result.recall:.4f} against exact search"),
        ("batch size", f"{result.batch_size:,} (or what came within {result.batch_max_wait_ms} ms)"),
        ("record format", result.format),
        (
            "workers",
            f"{result.workers} in {_replicas(result.replicas, result.consumers)} (producing: {result.produce_on};"
            f" batches in flight: {result.max_batches_in_flight})",
        ),
        ("(a) raw predict", f"{result.raw_rows_per_s:,.0f} rows/s"),
        ("(b) end to end", f"{result.e2e_rows_per_s:,.0f} rows/s ({result.records:,} records)"),
        (
            "  after the first",
            f"{result.e2e_after_first_rows_per_s:,.0f} rows/s"
            f" (first prediction after {result.first_prediction_s:.2f} s)",
        ),
        ("  decoded on driver", f"{result.backlog_decoded_on_driver:,} records (0: the workers parsed them all)"),
        ("  driver's GC", f"{result.backlog_driver_gc_s:.2f} s during the backlog"),
        ("  CPU", _cpu(result) + f"; the bench's own {result.backlog_bench_cpu_s:.2f} s"),
        (
            "  by consumer" if result.consumers > 1 else "  by replica",
            " / ".join(f"{count:,}" for count in result.backlog_predicted_by_replica) + " records",
        ),
        *([("  replicas' GPUs", " / ".join(result.replica_gpus))] if result.replica_gpus else []),
        (
            "  sent in",
            f"{result.backlog_sent_s:.2f} s (the backlog's burst, from its release to its last acknowledgement)",
        ),
        (
            "  bench's processes",
            f"{_count(result.backlog_senders, 'sender')} of the burst,"
            f" {_count(result.output_readers, 'reader')} of the predictions (and of the loop's)",
        ),
        ("  course", describe_progress(result.backlog_progress)),
        ("  host's cores", f"{result.backlog_host_busy:.0%} busy (every process of the host)"),
        *([("  stages (s)", " ".join(result.backlog_stage_seconds))] if result.backlog_stage_seconds else []),
        *[("  GPUs", line) for line in result.backlog_gpus],
        ("(b)/(a)", f"{result.ratio:.2f}"),
        (
            "(t) transport loop",
            f"{result.transport_rows_per_s:,.0f} rows/s (consume, decode, encode, produce, commit;"
            f" {result.transport_cpu_s:.2f} CPU s)",
        ),
        ("  host's cores", f"{result.transport_host_busy:.0%} busy during the loop"),
        ("  its first batch", f"committed {result.transport_first_commit_s:.2f} s after the release"),
        ("  its course", describe_moved(result.transport_progress)),
        ("(b)/(t)", f"{result.e2e_over_transport:.2f}"),
        ("latency p50 / p99", f"{result.p50_ms:.1f} ms / {result.p99_ms:.1f} ms at {result.offered_rows_per_s:,.0f}/s"),
        (
            "  its batches",
            f"{result.latency_batches:,} of {result.latency_batch_records_mean:,.0f} records on average,"
            f" {result.latency_batch_ms_mean:.1f} ms from consumed to committed"
            f" ({result.latency_predict_ms_mean:.1f} ms a prediction on the Dask workers)",
        ),
        ("machine", result.machine),
        ("date", result.date),
    ]
    if result.soak_worker_rss_mib:
        first, last = result.soak_worker_rss_mib[0], result.soak_worker_rss_mib[-1]
        rows.insert(
            -2,
            (
                "soak",
                f"{result.soak_seconds:.0f} s: worker RSS {first:.0f} → {last:.0f} MiB"
                f" (max {max(result.soak_worker_rss_mib):.0f}; with Dask"
                f" {result.soak_tree_rss_mib[0]:.0f} → {result.soak_tree_rss_mib[-1]:.0f} MiB)",
            ),
        )
    return "\n".join(f"{name:<20}{value}" for name, value in rows)


def _replicas(count: int, consumers: int = 1) -> str:
    served = "one knnstream serve" if count == 1 else f"{count} knnstream serve replicas (one consumer group)"
    return served if consumers == 1 else f"{served}, {consumers} consumers each on its Dask cluster"


def _cpu(result: BenchResult) -> str:
    """The backlog's CPU time; a driver near one core is what a replica's throughput waits for."""
    backlog_s = result.records / result.e2e_rows_per_s if result.e2e_rows_per_s else 0.0
    drivers = result.replicas * result.consumers
    per_driver = result.backlog_driver_cpu_s / backlog_s / drivers if backlog_s else 0.0
    return (
        f"driver {result.backlog_driver_cpu_s:.2f} s ({per_driver:.0%} of a core each),"
        f" Dask workers {result.backlog_dask_cpu_s:.2f} s, over {backlog_s:.2f} s of backlog"
    )


def _count(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"
