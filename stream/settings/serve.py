"""``knnstream serve``'s settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stream.settings.base import ComputeSettings, InputFormat, KafkaSettings, ProduceOn


class ServeSettings(KafkaSettings, ComputeSettings):
    """``knnstream serve``: the streaming prediction worker."""

    input_topic: str = Field("features", description="topic of feature records")
    output_topic: str = Field("predictions", description="topic the predictions go to")
    dlq_topic: str = Field("features.dlq", description="dead-letter topic for records that cannot be scored")
    create_topics: bool = Field(
        False,
        description="create missing topics, one partition each (development; without it a missing topic stops the"
        " start)",
    )
    group_id: str = Field("knnstream", description="Kafka consumer group")
    consumers: int = Field(
        1,
        ge=1,
        description="consumer processes of the group, sharing one Dask cluster (local, or --scheduler's); each"
        " has its own metrics port, --metrics-port and the next ones",
    )
    model: str = Field(..., description="model to serve: NAME@ALIAS (followed as it moves) or NAME:VERSION")
    shadow: str | None = Field(
        None, description="candidate model scored beside the served one, never published: NAME@ALIAS or NAME:VERSION"
    )
    model_poll_interval_s: float = Field(5.0, gt=0, description="how often the model aliases are looked up")
    expected_features: int | None = Field(
        None, ge=1, description="features per input record; the worker refuses to start with a model of another count"
    )
    store: str = Field("./models", description="model store root: a directory or fsspec URL")
    metrics_host: str = Field("0.0.0.0", description="bind address of the /metrics and /healthz endpoint")
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="port of the /metrics and /healthz endpoint (0: any free port)"
    )
    batch_max_records: int = Field(10_000, ge=1, description="a micro-batch closes at this many records")
    batch_max_wait_ms: int = Field(200, ge=1, description="... or this long after its first record")
    max_batches_in_flight: int = Field(
        2,
        ge=1,
        description="batches under way at once: one is predicted while the one before it is produced"
        " (a local Dask cluster gets as many threads per worker, at least 2)",
    )
    max_record_bytes: int = Field(1_048_576, ge=1, description="larger record values are dead-lettered")
    input_format: InputFormat = Field(
        "json",
        description='json ({"id", "features"}) or float32 (the features as little-endian float32; the id is the key)',
    )
    probabilities: bool = Field(
        False, description='add "probabilities": {"<class>": p} (predict_proba) to each prediction of a classifier'
    )
    produce_on: ProduceOn = Field(
        "auto",
        description="who produces the predictions: the Dask workers that scored them (at-least-once), the driver"
        " (keeps the input order per partition; needed by exactly-once), or auto (workers for one at-least-once"
        " consumer; each consumer its own with --consumers)",
    )
    local_dask_workers: Literal["auto", "threads", "processes"] = Field(
        "auto",
        description="how the workers of a local CPU Dask cluster run: threads of the serving process, processes,"
        " or auto (threads for one worker, processes for more; processes with --consumers, which share them)",
    )
    delivery_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the broker to acknowledge a batch")
    producer_queue_max_messages: int = Field(
        100_000,
        ge=1,
        description="output records waiting for the broker (librdkafka queue.buffering.max.messages);"
        " when the queue is full, delivery waits",
    )
    guarantee: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once", description="at-least-once (commit after acks) or exactly-once (Kafka transactions)"
    )
    transactional_id: str | None = Field(
        None, description="transactional.id of the exactly-once producer (default: unique per instance)"
    )
    max_batch_retries: int = Field(
        20, ge=1, description="a batch failing this many times in a row stops the worker (its offsets uncommitted)"
    )
    bad_ratio_limit: float = Field(
        0.5, gt=0, le=1, description="circuit breaker: stop when more than this share of the recent records is bad"
    )
    bad_ratio_window: int = Field(1000, ge=1, description="circuit breaker: how many recent records the share counts")
    bad_run_limit: int = Field(500, ge=1, description="circuit breaker: stop after this many bad records in a row")
    max_poll_interval_ms: int = Field(300_000, ge=1, description="librdkafka max.poll.interval.ms")
    session_timeout_ms: int = Field(45_000, ge=1, description="librdkafka session.timeout.ms")
    statistics_interval_ms: int = Field(5_000, ge=0, description="librdkafka statistics (consumer lag) interval")

    @model_validator(mode="after")
    def _a_metrics_port_for_each_consumer(self) -> ServeSettings:
        if self.metrics_port and self.metrics_port + self.consumers - 1 > 65535:
            raise ValueError(
                f"--metrics-port {self.metrics_port} leaves no port for each of --consumers {self.consumers}"
            )
        return self

    @model_validator(mode="after")
    def _shared_workers_are_processes(self) -> ServeSettings:
        # the cluster of --consumers N is started by the parent, and each consumer, a process of
        # its own, reaches it over TCP: workers that were threads of one process would not be shared
        local_cpu_cluster = self.scheduler is None and self.backend != "gpu"
        if self.consumers > 1 and self.local_dask_workers == "threads" and local_cpu_cluster:
            raise ValueError(
                f"--local-dask-workers threads runs the Dask workers in the serving process, but the"
                f" --consumers {self.consumers} share theirs: use processes (or auto) with --consumers"
            )
        return self


def who_produces(produce_on: ProduceOn, guarantee: str, consumers: int) -> Literal["workers", "driver"]:
    """``--produce-on`` resolved: ``auto`` is the Dask workers for one at-least-once consumer, the
    driver otherwise. With ``--consumers N`` each consumer produces its own: every consumer's
    predictions would otherwise queue behind the one interpreter of one Dask worker a GPU (on one
    H200, 4 consumers delivered 340,946 records/s through the worker, 408,199 producing their own,
    the bench's one sender the limit of the second)."""
    if produce_on != "auto":
        return produce_on
    return "workers" if guarantee == "at-least-once" and consumers == 1 else "driver"
