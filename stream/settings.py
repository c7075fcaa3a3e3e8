"""One frozen settings object per command, read from flags and ``KNNSTREAM_*`` variables.

Settings are built once in :mod:`stream.cli` and passed down; nothing deeper in the
package reads the environment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendChoice = Literal["auto", "cpu", "gpu"]
Task = Literal["classification", "regression"]
# json: {"id": ..., "features": [...]}; float32: the features as little-endian float32, the id in the key
InputFormat = Literal["json", "float32"]


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNNSTREAM_", frozen=True, extra="forbid")


class KafkaSettings(_Base):
    """Connection to the Kafka cluster; the librdkafka keys derive from the field names."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, HOST:PORT[,...]")
    security_protocol: str | None = Field(None, description="librdkafka security.protocol, e.g. SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="librdkafka sasl.mechanism, e.g. SCRAM-SHA-512")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_ca_location: str | None = Field(None, description="CA certificate file for TLS")

    def librdkafka_config(self) -> dict[str, Any]:
        """The connection part of a librdkafka configuration, as a new dict."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        for field in ("security_protocol", "sasl_mechanism", "sasl_username", "ssl_ca_location"):
            value = getattr(self, field)
            if value is not None:
                config[field.replace("_", ".")] = value
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config


class ComputeSettings(_Base):
    """Where predictions and training run."""

    backend: BackendChoice = Field("auto", description="cpu, gpu, or auto (gpu when CUDA and RAPIDS are usable)")
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler; a local cluster when unset")
    dask_workers: int = Field(2, ge=1, description="workers of the local Dask cluster (one per GPU on GPU hosts)")
    rmm_pool_size: str | None = Field(
        None, description="RMM memory pool of each local dask-cuda worker, e.g. 20GB or 0.8 (GPU backend)"
    )


class ServeSettings(KafkaSettings, ComputeSettings):
    """``knnstream serve``: the streaming prediction worker."""

    input_topic: str = Field("features", description="topic of feature records")
    output_topic: str = Field("predictions", description="topic the predictions go to")
    dlq_topic: str = Field("features.dlq", description="dead-letter topic for records that cannot be scored")
    group_id: str = Field("knnstream", description="Kafka consumer group")
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
    produce_on: Literal["auto", "workers", "driver"] = Field(
        "auto",
        description="who produces the predictions: the Dask workers that scored them (at-least-once), the driver"
        " (keeps the input order per partition; needed by exactly-once), or auto (workers unless exactly-once)",
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


class TrainSettings(ComputeSettings):
    """``knnstream train``: fit, evaluate and publish a model."""

    data: str = Field(..., description="Parquet or CSV training data: path, glob or fsspec URL")
    label: str = Field(..., description="label column")
    features: str | None = Field(
        None, description="feature columns, comma-separated (default: every numeric column but the label)"
    )
    task: Task = Field("classification", description="classification or regression")
    k: str = Field("5", description="number of neighbours, or 'auto' to choose it on a validation split")
    k_candidates: str = Field("1,3,5,7,9,15,25", description="values tried by --k auto")
    metric: Literal["euclidean", "manhattan", "cosine"] = Field("euclidean", description="distance metric")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="share of rows kept out to report metrics")
    seed: int = Field(0, description="random seed of the holdout and validation splits")
    store: str = Field("./models", description="model store root: a directory or fsspec URL")
    name: str = Field(..., description="model name in the store")
    alias: str | None = Field(None, description="alias to point at the new version, e.g. production")

    @field_validator("k")
    @classmethod
    def _k_is_int_or_auto(cls, value: str) -> str:
        if value != "auto" and not (value.isdigit() and int(value) > 0):
            raise ValueError("k must be a positive integer or 'auto'")
        return value

    def feature_list(self) -> list[str] | None:
        if self.features is None:
            return None
        return [name.strip() for name in self.features.split(",") if name.strip()]

    def k_candidate_list(self) -> list[int]:
        return sorted({int(value) for value in self.k_candidates.split(",") if value.strip()})


class ProduceSettings(KafkaSettings):
    """``knnstream produce``: a load generator of feature records."""

    topic: str = Field("features", description="topic to write to")
    data: str | None = Field(None, description="Parquet, CSV or JSON-lines file of records to send")
    id_column: str | None = Field(None, description="id column of --data (default: the row number)")
    synthetic: int | None = Field(None, ge=1, description="send this many synthetic records instead of --data")
    features: int = Field(16, ge=1, description="features per synthetic record")
    rate: float | None = Field(None, gt=0, description="records per second (default: as fast as possible)")
    seed: int = Field(0, description="random seed of synthetic records")
    format: InputFormat = Field(
        "json", description="record format: json, or float32 (features only; the id is the key)"
    )


class StoreSettings(_Base):
    """``knnstream models``: the model store."""

    store: str = Field("./models", description="model store root: a directory or fsspec URL")


class DemoSettings(ComputeSettings):
    """``knnstream demo``: the whole system on this machine, end to end."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka to use; a local broker is started there when none answers"
    )
    records: int = Field(100_000, ge=1, description="records streamed through the worker")
    training_rows: int = Field(50_000, ge=100, description="rows of generated historical data")
    features: int = Field(16, ge=1, description="features per record")
    k: int = Field(5, ge=1, description="number of neighbours")
    metrics_port: int = Field(9108, ge=0, le=65535, description="port of the worker's /metrics endpoint")
    batch_max_records: int = Field(10_000, ge=1, description="micro-batch size of the worker")
    timeout_s: float = Field(600.0, gt=0, description="give up when the predictions take longer than this")


class BenchSettings(ComputeSettings):
    """``knnstream bench``: raw predict throughput against end-to-end throughput, in one run."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka to use; a local broker is started there when none answers"
    )
    index_rows: int = Field(100_000, ge=1, description="rows of the model's index")
    features: int = Field(32, ge=1, description="features per record")
    k: int = Field(5, ge=1, description="number of neighbours")
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
    produce_on: Literal["workers", "driver"] = Field("workers", description="who produces the predictions")
    max_batches_in_flight: int = Field(2, ge=1, description="batches under way at once in the worker")
    format: InputFormat = Field("json", description="record format: json or float32 (the worker's --input-format)")
    latency_seconds: float = Field(10.0, gt=0, description="length of the fixed-load latency phase")
    soak_seconds: float = Field(
        0.0, ge=0, description="then this long more at the same load, sampling the worker's RSS every 30 s (0: no soak)"
    )
    json_output: bool = Field(False, description="print one JSON object instead of a table (flag: --json)")
    metrics_port: int = Field(
        9109, ge=1, le=65535, description="port of the benchmarked worker's /metrics (the next ones for more replicas)"
    )

    @model_validator(mode="after")
    def _replicas_share_the_workers(self) -> BenchSettings:
        if self.workers % self.replicas:
            raise ValueError(f"--workers {self.workers} cannot be shared out evenly among --replicas {self.replicas}")
        if self.replicas > self.partitions:
            raise ValueError(f"--replicas {self.replicas} is more than --partitions {self.partitions}: some would idle")
        if self.replicas > 1 and self.soak_seconds > 0:
            raise ValueError("--soak-seconds samples one worker's memory: use it with --replicas 1")
        if self.replicas > 1 and self.scheduler:
            raise ValueError("--replicas starts a Dask cluster for each replica: leave --scheduler unset")
        if self.metrics_port + self.replicas - 1 > 65535:
            raise ValueError(
                f"--metrics-port {self.metrics_port} leaves no port for each of --replicas {self.replicas}"
            )
        return self
