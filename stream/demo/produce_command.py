"""``knnstream produce``: checked before anything is sent, so every mistake is one line.

The broker must answer and the topic exist (a producer would otherwise retry for ever, or the
broker create a misspelt topic on first use); with ``--model`` the records carry the model's
features, in its order, and a synthetic record as many as it takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from confluent_kafka import Producer

from model_store import ModelStore, ModelStoreError
from stream.demo.files import file_records
from stream.demo.produce import FeatureRecord, send, synthetic_records
from stream.errors import ConfigurationError, KafkaSetupError
from stream.settings import ProduceSettings
from stream.sink.admin import create_topics, missing_topics


def run_produce(settings: ProduceSettings) -> int:
    """Send the records; returns how many were sent (every one acknowledged)."""
    if (settings.data is None) == (settings.synthetic is None):
        raise ConfigurationError("give exactly one of --data FILE or --synthetic N")
    feature_names = _model_features(settings)
    records = _first_checked(_records(settings, feature_names))
    _check_topic(settings)
    producer = Producer({**settings.librdkafka_config(), "linger.ms": 20, "compression.type": "lz4"})
    return send(producer, settings.topic, records, settings.rate, input_format=settings.format)


def _model_features(settings: ProduceSettings) -> tuple[str, ...] | None:
    """The feature names of ``--model`` (None without one)."""
    if settings.model is None:
        return None
    try:
        manifest = ModelStore(settings.store).resolve(settings.model)
    except ModelStoreError as exc:
        raise ConfigurationError(f"--model {settings.model}: {exc}") from exc
    if settings.synthetic is not None and settings.features != manifest.n_features:
        raise ConfigurationError(
            f"--features {settings.features}, but model {manifest.name}:{manifest.version} takes"
            f" {manifest.n_features} features (set --features {manifest.n_features})"
        )
    return manifest.feature_names


def _records(settings: ProduceSettings, feature_names: Sequence[str] | None) -> Iterator[FeatureRecord]:
    if settings.synthetic is not None:
        return synthetic_records(settings.synthetic, settings.features, settings.seed)
    records = file_records(settings.data or "", settings.id_column, settings.label, feature_names)
    if feature_names is None:
        return records
    return _counted(records, len(feature_names), settings.data or "")


def _counted(records: Iterator[FeatureRecord], n_features: int, path: str) -> Iterator[FeatureRecord]:
    """JSON-lines records carry their own features: each must have as many as the model takes."""
    for record in records:
        if len(record.features) != n_features:
            raise ConfigurationError(
                f"record {record.id} of {path} has {len(record.features)} features; the model takes {n_features}"
            )
        yield record


def _first_checked(records: Iterator[FeatureRecord]) -> Iterator[FeatureRecord]:
    """The same records, the first read now: a file that cannot be read fails before the broker is asked."""
    first = next(records, None)

    def again() -> Iterator[FeatureRecord]:
        if first is not None:
            yield first
            yield from records

    return again()


def _check_topic(settings: ProduceSettings) -> None:
    config = settings.librdkafka_config()
    if not missing_topics(config, [settings.topic]):
        return
    if settings.create_topic:
        create_topics(config, [settings.topic])
        return
    raise KafkaSetupError(
        f"topic {settings.topic!r} does not exist on {settings.bootstrap_servers}: create it with"
        f" `knnstream topics create --input-topic {settings.topic}` (or pass --create-topic)"
    )
