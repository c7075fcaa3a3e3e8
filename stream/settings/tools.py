"""The settings of ``knnstream produce``, ``models``, ``demo`` and ``bench``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stream.settings.base import (
    CommandSettings,
    ComputeSettings,
    IndexChoice,
    InputFormat,
    KafkaSettings,
    ProduceOn,
    own_env,
)


class ProduceSettings(KafkaSettings):
    """``knnstream produce``: a load generator of feature records."""

    topic: str = Field("features", description="topic to write to")
    data: str | None = Field(None, description="Parquet, CSV or JSON-lines file of records to send")
    id_column: str | None = Field(None, description="id column of --data (default: the row number)")
    synthetic: int | None = Field(None, ge=1, description="send this many synthetic records instead of --data")
    features: int = Field(
        16, ge=1, description="features per synthetic record", validation_alias=own_env("produce", "features")
    )
    rate: float | None = Field(None, gt=0, description="records per second (default: as fast as possible)")
    seed: int = Field(0, description="random seed of synthetic records")
    format: InputFormat = Field(
        "json", description="record format: json, or float32 (features only; the id is the key)"
    )
    label: str | None = Field(None, description="label column of --data, left out of the features")
    model: str | None = Field(
        None,
        description="NAME@ALIAS or NAME:VERSION in --store: send its feature columns of --data, in its order,"
        " and check the feature count",
    )
    store: str = Field("./models", description="model store of --model: a directory or fsspec URL")
    create_topic: bool = Field(False, description="create --topic when it does not exist (development)")


class TopicsSettings(KafkaSettings):
    """``knnstream topics create``: the input, output and dead-letter topics of a worker."""

    input_topic: str = Field("features", description="topic of feature records")
    output_topic: str = Field("predictions", description="topic the predictions go to")
    dlq_topic: str = Field("features.dlq", description="dead-letter topic")
    partitions: int = Field(3, ge=1, description="partitions of each topic (the most workers one group can use)")
    replication_factor: int = Field(1, ge=1, description="copies of each partition (3 on a production cluster)")
    retention_ms: int | None = Field(
        None, ge=-1, description="retention.ms of each topic, -1 for ever (default: the broker's)"
    )

    def topics(self) -> list[str]:
        return [self.input_topic, self.output_topic, self.dlq_topic]

    def topic_config(self) -> dict[str, str]:
        return {} if self.retention_ms is None else {"retention.ms": str(self.retention_ms)}


class StoreSettings(CommandSettings):
    """``knnstream models``: the model store."""

    store: str = Field("./models", description="model store root: a directory or fsspec URL")


class DemoSettings(ComputeSettings):
    """``knnstream demo``: the whole system on this machine, end to end."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka to use; a local broker is started there when none answers"
    )
    records: int = Field(100_000, ge=1, description="records streamed through the worker")
    training_rows: int = Field(50_000, ge=100, description="rows of generated historical data")
    features: int = Field(16, ge=1, description="features per record", validation_alias=own_env("demo", "features"))
    k: int = Field(5, ge=1, description="number of neighbours", validation_alias=own_env("demo", "k"))
    metrics_port: int = Field(9108, ge=0, le=65535, description="port of the worker's /metrics endpoint")
    batch_max_records: int = Field(10_000, ge=1, description="micro-batch size of the worker")
    timeout_s: float = Field(600.0, gt=0, description="give up when the predictions take longer than this")


class BenchSettings(ComputeSettings):
    """``knnstream bench``: raw predict throughput against end-to-end throughput, in one run."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka to use; a local broker is started there when none answers"
    )
    index_rows: int = Field(100_000, ge=1, description="rows of the model's index")
    data_kind: Literal["blobs", "correlated"] = Field(
        "blobs", description="generated rows: blobs (noise around 10 centres) or correlated (8 latent directions)"
    )
    data: str | None = Field(
        None,
        description="bench a Parquet or CSV table instead: its rows the index, a held-out sample the queries",
        validation_alias=own_env("bench", "data"),
    )
    label: str | None = Field(None, description="label column of --data", validation_alias=own_env("bench", "label"))
    index: IndexChoice = Field("brute", description="neighbour index of the model (as knnstream train --index)")
    min_recall: float = Field(0.99, gt=0, le=1, description="recall@k the index's search settings must reach")
    features: int = Field(32, ge=1, description="features per record", validation_alias=own_env("bench", "features"))
    k: int = Field(5, ge=1, description="number of neighbours", validation_alias=own_env("bench", "k"))
    batch_size: int = Field(10_000, ge=1, description="micro-batch size (records)")
    batch_max_wait_ms: int = Field(
        200, ge=1, description="the worker's --batch-max-wait-ms: how long a batch waits to fill (sets the latency)"
    )
    records: int = Field(100_000, ge=1, description="records streamed end to end")
    partitions: int = Field(4, ge=1, description="partitions of the input topic")
    workers: int = Field(1, ge=1, description="Dask workers (GPUs on the GPU backend)")
    replicas: int = Field(
        1,
        ge=1,
        description="knnstream serve processes in one consumer group, the workers shared out among them"
        " (on the GPU backend each gets GPUs of its own)",
    )
    consumers: int = Field(
        1, ge=1, description="consumer processes of each knnstream serve, sharing its Dask cluster (serve --consumers)"
    )
    produce_on: ProduceOn = Field("auto", description="who produces the predictions (as knnstream serve --produce-on)")
    max_batches_in_flight: int = Field(2, ge=1, description="batches under way at once in the worker")
    format: InputFormat = Field("json", description="record format: json or float32 (the worker's --input-format)")
    latency_seconds: float = Field(10.0, gt=0, description="length of the fixed-load latency phase")
    soak_seconds: float = Field(
        0.0, ge=0, description="then this long more at the same load, sampling the worker's RSS every 30 s (0: no soak)"
    )
    backlog_senders: int = Field(
        0,
        ge=0,
        description="processes sending the backlog's burst, its records shared out (0: one per 4 cores, 1 to 4)",
    )
    output_readers: int = Field(
        0, ge=0, description="processes reading the output topic, in one consumer group (0: one per 4 cores, 1 to 4)"
    )
    json_output: bool = Field(False, description="print one JSON object instead of a table (flag: --json)")
    metrics_port: int = Field(
        9109,
        ge=1,
        le=65535,
        description="port of the benchmarked worker's /metrics (the next ones for more replicas or consumers)",
    )

    @model_validator(mode="after")
    def _replicas_share_the_workers(self) -> BenchSettings:
        if self.workers % self.replicas:
            raise ValueError(f"--workers {self.workers} cannot be shared out evenly among --replicas {self.replicas}")
        consumers = self.replicas * self.consumers
        if self.replicas > self.partitions:
            raise ValueError(f"--replicas {self.replicas} is more than --partitions {self.partitions}: some would idle")
        if consumers > self.partitions:
            raise ValueError(
                f"--replicas {self.replicas} times --consumers {self.consumers} is more than --partitions"
                f" {self.partitions}: some would idle"
            )
        if consumers > 1 and self.soak_seconds > 0:
            raise ValueError("--soak-seconds samples one worker's memory: use it with --replicas 1 and --consumers 1")
        if self.replicas > 1 and self.scheduler:
            raise ValueError("--replicas starts a Dask cluster for each replica: leave --scheduler unset")
        if self.metrics_port + consumers - 1 > 65535:
            raise ValueError(
                f"--metrics-port {self.metrics_port} leaves no port for each of --replicas {self.replicas}"
                f" times --consumers {self.consumers}"
            )
        return self
