"""Reading training data (Parquet or CSV; path, glob or fsspec URL) with Dask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsspec.core import get_fs_token_paths

from stream.backend import Backend, get_dd_pkg
from stream.errors import TrainingError

_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


@dataclass(frozen=True)
class Columns:
    label: str
    features: tuple[str, ...]


def read_table(path: str, backend: Backend) -> Any:
    """A Dask dataframe (dask_cudf on the GPU backend) of the files at ``path``."""
    require_files(path)
    dd = get_dd_pkg(backend)
    lowered = path.lower().rstrip("/")
    try:
        if lowered.endswith(_CSV_SUFFIXES):
            return dd.read_csv(path)
        return dd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read training data at {path}: {exc}") from exc


def require_files(path: str) -> None:
    """Refuse, in one line, a path or glob that names nothing (Dask's own error does not say so)."""
    try:
        storage, _, paths = get_fs_token_paths(path)
        found = bool(paths) and storage.exists(paths[0])
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read training data at {path}: {exc}") from exc
    if not found:
        raise TrainingError(f"no file matches {path!r}")


def choose_columns(frame: Any, label: str, features: list[str] | None) -> Columns:
    """The label and feature columns; features default to every numeric column but the label."""
    columns = list(frame.columns)
    if label not in columns:
        raise TrainingError(f"label column {label!r} not in the data; columns are {', '.join(map(str, columns))}")
    if features is None:
        features = [
            str(name) for name, dtype in frame.dtypes.items() if name != label and getattr(dtype, "kind", "O") in "biuf"
        ]
    missing = [name for name in features if name not in columns]
    if missing:
        raise TrainingError(f"feature column(s) {', '.join(missing)} not in the data")
    if not features:
        raise TrainingError("no numeric feature columns found; name them with --features")
    return Columns(label, tuple(features))
