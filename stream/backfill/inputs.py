"""The input of ``knnstream score``: Parquet or CSV files read lazily by the Dask workers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fsspec

from stream.backend import Backend, get_dd_pkg
from stream.backfill.errors import BackfillError
from stream.errors import ConfigurationError

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


def read_input(path: str, backend: Backend, id_column: str, features: Sequence[str]) -> Any:
    """A Dask frame (dask_cudf on the GPU backend) of the id and feature columns at ``path``.

    Nothing is read here but the schema (Parquet) or a sample (CSV); each worker reads its
    own partitions when the job runs. CSV feature columns are read as float64 and the id as
    text, so a missing value in one block cannot change a column's type.
    """
    dd = get_dd_pkg(backend)
    try:
        lowered = path.lower().rstrip("/")
        if lowered.endswith(_CSV_SUFFIXES):
            separator = "\t" if lowered.endswith(".tsv") else ","
            table = dd.read_csv(path, sep=separator, dtype={**dict.fromkeys(features, "float64"), id_column: "str"})
        else:
            table = dd.read_parquet(path, blocksize=None)  # one partition per file, on both backends
    except (OSError, ValueError) as exc:
        raise BackfillError(f"cannot read input data at {path}: {exc}") from exc
    if id_column not in table.columns and table.index.name == id_column:
        table = table.reset_index()
    check_columns(table, id_column, features)
    return table[[id_column, *features]]


def check_columns(table: Any, id_column: str, features: Sequence[str]) -> None:
    """Every feature of the model present and numeric, and the id column present."""
    columns = [str(name) for name in table.columns]
    missing = [name for name in features if name not in columns]
    if missing:
        raise ConfigurationError(
            f"the model's feature column(s) {', '.join(missing)} are not in the data; its columns are"
            f" {', '.join(columns)}"
        )
    if id_column not in columns:
        raise ConfigurationError(f"id column {id_column!r} is not in the data; name it with --id-column")
    not_numeric = [name for name in features if getattr(table.dtypes[name], "kind", "O") not in "biuf"]
    if not_numeric:
        raise ConfigurationError(f"feature column(s) {', '.join(not_numeric)} are not numeric")


def check_output(output: str, overwrite: bool) -> None:
    """Refuse to mix a new result with files already in the output directory."""
    filesystem, root = fsspec.core.url_to_fs(output)
    if not filesystem.exists(root):
        return
    if not filesystem.isdir(root):
        raise ConfigurationError(f"output {output} exists and is not a directory")
    if filesystem.ls(root) and not overwrite:
        raise ConfigurationError(f"output {output} already holds files; pass --overwrite to replace them")
