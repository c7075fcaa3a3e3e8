"""The records ``knnstream produce --data`` sends: Parquet, CSV or JSON-lines files (a path, a
glob or an fsspec URL), their features chosen the way the model reads them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from stream.demo.produce import FeatureRecord
from stream.errors import ConfigurationError
from stream.train.data import matching_files

_JSON_LINES = (".jsonl", ".json", ".ndjson")
_CSV = (".csv", ".csv.gz", ".tsv")


def file_records(
    path: str, id_column: str | None, label: str | None = None, feature_names: Sequence[str] | None = None
) -> Iterator[FeatureRecord]:
    """Records of every file ``path`` matches, read one file at a time.

    The features are ``feature_names`` in that order when given (a model's), else every numeric
    column but the id and the ``label``; a JSON-lines file of ``{"id", "features"}`` values is
    sent as it is. Checked on the first file, before anything is sent.
    """
    first_row = 0  # without an id column, a record's id is its row number across all the files
    for name in matching_files(path):
        frame = _read(name)
        yield from _records_of(frame, name, first_row, id_column, label, feature_names)
        first_row += len(frame)


def _read(name: str) -> Any:
    import pandas as pd

    lowered = name.lower()
    try:
        if lowered.endswith(_JSON_LINES):
            return pd.read_json(name, lines=True)
        if lowered.endswith(_CSV):
            return pd.read_csv(name, sep="\t" if lowered.endswith(".tsv") else ",")
        return pd.read_parquet(name)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {name}: {exc}") from exc


def _records_of(
    frame: Any,
    name: str,
    first_row: int,
    id_column: str | None,
    label: str | None,
    feature_names: Sequence[str] | None,
) -> Iterator[FeatureRecord]:
    if id_column is not None and id_column not in frame.columns:
        raise ConfigurationError(f"id column {id_column!r} is not in {name}; its columns are {_listed(frame)}")
    ids = frame[id_column].astype(str) if id_column else [str(first_row + row) for row in range(len(frame))]
    if "features" in frame.columns and frame["features"].dtype == object:  # JSON lines of feature lists
        ids = frame["id"].astype(str) if "id" in frame.columns and id_column is None else ids
        for record_id, features in zip(ids, frame["features"], strict=True):
            yield FeatureRecord(record_id, [float(v) for v in features])
        return
    columns = _feature_columns(frame, name, id_column, label, feature_names)
    for record_id, row in zip(ids, frame[columns].to_numpy(dtype=float).tolist(), strict=True):
        yield FeatureRecord(record_id, row)


def _feature_columns(
    frame: Any, name: str, id_column: str | None, label: str | None, feature_names: Sequence[str] | None
) -> list[str]:
    if feature_names is not None:
        missing = [column for column in feature_names if column not in frame.columns]
        if missing:
            raise ConfigurationError(
                f"the model's feature column(s) {', '.join(missing)} are not in {name};"
                f" its columns are {_listed(frame)}"
            )
        return list(feature_names)
    if label is not None and label not in frame.columns:
        raise ConfigurationError(f"label column {label!r} is not in {name}; its columns are {_listed(frame)}")
    return [c for c in frame.columns if c not in {id_column, label} and frame[c].dtype.kind in "biuf"]


def _listed(frame: Any) -> str:
    return ", ".join(str(column) for column in frame.columns)
