"""The manifest describing one stored model version, and the draft a publisher supplies."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from model_store.errors import InvalidManifestError, InvalidNameError
from model_store.names import (
    check_filename,
    check_name,
    is_iso_utc,
    is_sha256_hex,
)

Task = Literal["classification", "regression"]
ClassLabel = str | int | float | bool

MANIFEST_SCHEMA = 1
_SCHEMA_KEY = "manifest_schema"
_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ManifestDraft:
    """What a publisher knows about a model; the store adds name, version, created, files.

    Every container is copied on construction, so the caller's objects are never
    shared or mutated. ``extra`` is normalised to its JSON form (tuples become lists).
    """

    task: Task
    k: int
    metric: str
    feature_names: tuple[str, ...]
    n_features: int
    training_rows: int
    backend: str
    format: str
    classes: tuple[ClassLabel, ...] = ()
    holdout_metrics: dict[str, float] = field(default_factory=dict, hash=False)
    library_versions: dict[str, str] = field(default_factory=dict, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _normalise_model_fields(self)


@dataclass(frozen=True)
class Manifest:
    """Everything recorded about one published model version (``manifest.json``)."""

    name: str
    version: str
    created: str
    task: Task
    k: int
    metric: str
    feature_names: tuple[str, ...]
    n_features: int
    classes: tuple[ClassLabel, ...]
    training_rows: int
    holdout_metrics: dict[str, float] = field(hash=False)
    library_versions: dict[str, str] = field(hash=False)
    backend: str
    format: str
    files: dict[str, str] = field(hash=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        try:
            check_name("model", self.name)
            check_name("version", self.version)
        except InvalidNameError as exc:
            raise InvalidManifestError(str(exc)) from exc
        if not is_iso_utc(self.created):
            raise InvalidManifestError(f"manifest field 'created' must be ISO-8601 UTC text, got {self.created!r}")
        _normalise_model_fields(self)
        _set(self, "files", _checked_files(self.files))

    @classmethod
    def from_draft(
        cls, draft: ManifestDraft, *, name: str, version: str, created: str, files: Mapping[str, str]
    ) -> Manifest:
        """The manifest of ``draft`` published as ``name:version`` with these file checksums."""
        values = {f.name: getattr(draft, f.name) for f in fields(ManifestDraft)}
        return cls(name=name, version=version, created=created, files=dict(files), **values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists, fresh containers), tagged with its schema."""
        data: dict[str, Any] = {_SCHEMA_KEY: MANIFEST_SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = json.loads(json.dumps(value))
            data[f.name] = value
        return data

    def to_json(self) -> str:
        """Stable, human-readable JSON; ``Manifest.from_json`` restores an equal manifest."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """The manifest stored as ``data`` (as produced by ``to_dict``)."""
        values = dict(data)
        schema = values.pop(_SCHEMA_KEY, None)
        if schema != MANIFEST_SCHEMA:
            raise InvalidManifestError(
                f"unsupported manifest schema {schema!r}; this version reads schema {MANIFEST_SCHEMA}"
            )
        expected = {f.name for f in fields(cls)}
        missing = sorted(expected - values.keys())
        unknown = sorted(values.keys() - expected)
        if missing or unknown:
            raise InvalidManifestError(f"manifest fields do not match: missing {missing}, unknown {unknown}")
        for key in ("feature_names", "classes"):
            values[key] = _sequence(key, values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidManifestError(f"malformed manifest: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse ``manifest.json`` text; InvalidManifestError if it is not a valid manifest."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidManifestError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidManifestError(f"manifest must be a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _normalise_model_fields(obj: ManifestDraft | Manifest) -> None:
    """Validate the fields drafts and manifests share, replacing containers by copies."""
    if obj.task not in _TASKS:
        raise InvalidManifestError(f"task must be one of {_TASKS}, got {obj.task!r}")
    _check_int("k", obj.k, minimum=1)
    _check_int("n_features", obj.n_features, minimum=1)
    _check_int("training_rows", obj.training_rows, minimum=0)
    for key in ("metric", "backend", "format"):
        _check_text(key, getattr(obj, key))
    _set(obj, "feature_names", _checked_feature_names(obj.feature_names, obj.n_features))
    _set(obj, "classes", _checked_classes(obj.classes, obj.task))
    _set(obj, "holdout_metrics", _checked_metrics(obj.holdout_metrics))
    _set(obj, "library_versions", _checked_str_map("library_versions", obj.library_versions))
    _set(obj, "extra", _checked_extra(obj.extra))


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidManifestError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check_text(key: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidManifestError(f"{key} must be a non-empty string, got {value!r}")


def _sequence(key: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidManifestError(f"{key} must be a list or tuple, got {value!r}")
    return tuple(value)


def _checked_feature_names(value: object, n_features: int) -> tuple[str, ...]:
    names = _sequence("feature_names", value)
    for name in names:
        _check_text("every feature name", name)
    if len(set(names)) != len(names):
        raise InvalidManifestError(f"feature_names contains duplicates: {list(names)}")
    if names and len(names) != n_features:
        raise InvalidManifestError(f"feature_names has {len(names)} entries but n_features is {n_features}")
    return cast(tuple[str, ...], names)


def _checked_classes(value: object, task: str) -> tuple[ClassLabel, ...]:
    labels = _sequence("classes", value)
    booleans = [isinstance(label, bool) for label in labels]
    if any(booleans) and not all(booleans):  # True == 1: a mix could not tell the classes apart
        raise InvalidManifestError(f"boolean class labels cannot be mixed with others: {list(labels)}")
    for label in labels:
        if not isinstance(label, (str, int, float)):
            raise InvalidManifestError(f"class label must be str, int, float or bool, got {label!r}")
        if isinstance(label, float) and not math.isfinite(label):
            raise InvalidManifestError(f"class label must be finite, got {label!r}")
    if len(set(labels)) != len(labels):
        raise InvalidManifestError(f"classes contains duplicates: {list(labels)}")
    if task == "regression" and labels:
        raise InvalidManifestError("a regression model has no classes")
    if task == "classification" and not labels:
        raise InvalidManifestError("a classification model needs at least one class")
    return cast(tuple[ClassLabel, ...], labels)


def _checked_metrics(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidManifestError(f"holdout_metrics must be a mapping, got {value!r}")
    metrics: dict[str, float] = {}
    for key, number in value.items():
        _check_text("every holdout metric name", key)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise InvalidManifestError(f"holdout metric {key!r} must be a number, got {number!r}")
        if not math.isfinite(number):
            raise InvalidManifestError(f"holdout metric {key!r} must be finite, got {number!r}")
        metrics[key] = float(number)
    return metrics


def _checked_str_map(key: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidManifestError(f"{key} must be a mapping, got {value!r}")
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise InvalidManifestError(f"{key} must map str to str, got {name!r}: {text!r}")
    return dict(value)


def _checked_extra(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidManifestError(f"extra must be a mapping with str keys, got {value!r}")
    try:
        return cast(dict[str, Any], json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise InvalidManifestError(f"extra must be JSON-serialisable: {exc}") from exc


def _checked_files(value: object) -> dict[str, str]:
    files = _checked_str_map("files", value)
    if not files:
        raise InvalidManifestError("a manifest lists at least one file")
    for filename, digest in files.items():
        try:
            check_filename(filename)
        except InvalidNameError as exc:
            raise InvalidManifestError(str(exc)) from exc
        if not is_sha256_hex(digest):
            raise InvalidManifestError(f"file {filename!r} has no valid sha256 hex: {digest!r}")
    return files
