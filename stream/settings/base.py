"""The settings every command shares: the environment prefix, Kafka's connection, the compute."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.logs import LIBRDKAFKA_LOGGER

BackendChoice = Literal["auto", "cpu", "gpu"]
Task = Literal["classification", "regression"]
# json: {"id": ..., "features": [...]}; float32: the features as little-endian float32, the id in the key
InputFormat = Literal["json", "float32"]
# the neighbour index a model serves (stream.predict.index), or auto: chosen by size at train time
IndexChoice = Literal["brute", "ivf-flat", "ivf-pq", "cagra", "hnsw", "auto"]
ProduceOn = Literal["auto", "workers", "driver"]  # who produces the predictions (serve, bench)


def own_env(command: str, field: str) -> str:
    """The environment variable of a flag whose name another command gives another meaning
    (``--features``: a column list for ``train``, a count for ``produce``): ``KNNSTREAM_PRODUCE_FEATURES``.

    Used as the field's ``validation_alias``: the variable is read under that name alone."""
    return f"KNNSTREAM_{command.upper()}_{field.upper()}"


class CommandSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNNSTREAM_", frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _flags_by_field_name(cls, values: Any) -> Any:
        """A field of :func:`own_env` is set by its name too (``features=8``, as the CLI passes
        its flag), over its variable; its variable alone is read from the environment."""
        if not isinstance(values, dict):
            return values
        renamed = dict(values)
        for name, field in cls.model_fields.items():
            if isinstance(field.validation_alias, str) and name in renamed:
                renamed[field.validation_alias] = renamed.pop(name)
        return renamed


class KafkaSettings(CommandSettings):
    """Connection to the Kafka cluster; the librdkafka keys derive from the field names."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, HOST:PORT[,...]")
    security_protocol: str | None = Field(None, description="librdkafka security.protocol, e.g. SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="librdkafka sasl.mechanism, e.g. SCRAM-SHA-512")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_ca_location: str | None = Field(None, description="CA certificate file for TLS")

    def librdkafka_config(self) -> dict[str, Any]:
        """The connection part of a librdkafka configuration, as a new dict; librdkafka's log
        lines go through the project's logging (:class:`stream.logs.LibrdkafkaLog`)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "logger": LIBRDKAFKA_LOGGER}
        for field in ("security_protocol", "sasl_mechanism", "sasl_username", "ssl_ca_location"):
            value = getattr(self, field)
            if value is not None:
                config[field.replace("_", ".")] = value
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config


class ComputeSettings(CommandSettings):
    """Where predictions and training run."""

    backend: BackendChoice = Field("auto", description="cpu, gpu, or auto (gpu when CUDA and RAPIDS are usable)")
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler; a local cluster when unset")
    dask_workers: int = Field(2, ge=1, description="workers of the local Dask cluster (one per GPU on GPU hosts)")
    dashboard_address: str = Field(
        ":0", description="address of the local Dask cluster's dashboard, e.g. :8787 (:0: any free port)"
    )
    rmm_pool_size: str | None = Field(
        None, description="RMM memory pool of each local dask-cuda worker, e.g. 20GB or 0.8 (GPU backend)"
    )
