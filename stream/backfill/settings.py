"""Settings of ``knnstream score`` and ``knnstream replay`` (flags and ``KNNSTREAM_*`` variables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from stream.backfill.ranges import RangeSpec, parse_offsets, parse_time
from stream.errors import ConfigurationError
from stream.settings import ComputeSettings, InputFormat, KafkaSettings

ProgressChoice = Literal["auto", "always", "never"]


class _JobSettings(ComputeSettings):
    """What both batch jobs share: the model, and how their progress is shown."""

    model: str = Field(..., description="model to score with: NAME@ALIAS or NAME:VERSION")
    store: str = Field("./models", description="model store root: a directory or fsspec URL")
    metrics_host: str = Field("0.0.0.0", description="bind address of the /metrics endpoint")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus /metrics on this port while the job runs (0: any free port)"
    )
    progress: ProgressChoice = Field("auto", description="progress line on standard error: auto (on a terminal)")
    probabilities: bool = Field(
        False, description='add "probabilities": {"<class>": p} (predict_proba) to each prediction of a classifier'
    )


class ScoreSettings(_JobSettings):
    """``knnstream score``: predictions for every row of Parquet or CSV files, written as Parquet."""

    data: str = Field(..., description="Parquet or CSV input: path, glob, directory or fsspec URL")
    output: str = Field(..., description="output directory (path or fsspec URL): one Parquet part per input partition")
    id_column: str = Field("id", description="column whose value becomes the 'id' of each prediction")
    overwrite: bool = Field(False, description="replace the output directory when it already holds files")


class ReplaySettings(KafkaSettings, _JobSettings):
    """``knnstream replay``: re-score a bounded range of a topic into another topic."""

    input_topic: str = Field(..., description="topic of feature records to re-score")
    output_topic: str = Field(..., description="topic the predictions go to")
    dlq_topic: str | None = Field(None, description="dead-letter topic (default: bad records are only counted)")
    from_offsets: str | None = Field(None, description="first offsets, PARTITION:OFFSET[,...]")
    from_time: str | None = Field(None, description="first record time, ISO 8601 (UTC when no offset is given)")
    to_offsets: str | None = Field(None, description="end offsets (exclusive), PARTITION:OFFSET[,...]")
    to_time: str | None = Field(
        None, description="end time (exclusive), ISO 8601 (default for both --to flags: each partition's end)"
    )
    batch_max_records: int = Field(10_000, ge=1, description="records predicted and produced together")
    max_record_bytes: int = Field(1_048_576, ge=1, description="larger record values are dead-lettered")
    input_format: InputFormat = Field("json", description="format of the input records: json or float32")
    delivery_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the broker to acknowledge a batch")
    idle_timeout_s: float = Field(60.0, gt=0, description="fail when the broker sends nothing for this long")

    @field_validator("from_offsets", "to_offsets")
    @classmethod
    def _offsets_parse(cls, value: str | None) -> str | None:
        if value is not None:
            _as_value_error(parse_offsets, value)
        return value

    @field_validator("from_time", "to_time")
    @classmethod
    def _time_parses(cls, value: str | None) -> str | None:
        if value is not None:
            _as_value_error(parse_time, value)
        return value

    def range_spec(self) -> RangeSpec:
        """The range to replay; exactly one of --from-offsets and --from-time, at most one --to flag."""
        if (self.from_offsets is None) == (self.from_time is None):
            raise ConfigurationError("give exactly one of --from-offsets and --from-time")
        if self.to_offsets is not None and self.to_time is not None:
            raise ConfigurationError("give at most one of --to-offsets and --to-time")
        return RangeSpec(
            from_offsets=parse_offsets(self.from_offsets) if self.from_offsets is not None else None,
            from_time_ms=parse_time(self.from_time) if self.from_time is not None else None,
            to_offsets=parse_offsets(self.to_offsets) if self.to_offsets is not None else None,
            to_time_ms=parse_time(self.to_time) if self.to_time is not None else None,
        )


def _as_value_error(parse: Callable[[str], object], value: str) -> None:
    """Run a parser for its checks only; pydantic reports a ValueError against the field's flag."""
    try:
        parse(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from exc
