"""The files a ``--data`` path names: a path, a glob, or nothing, which is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import ConfigurationError
from stream.train.data import matching_files
from tests.helpers import write_history


def test_a_glob_names_its_files_in_order_and_a_path_itself(tmp_path: Path) -> None:
    for part in (1, 0):
        write_history(tmp_path / f"part-{part}.parquet", rows=10)
    assert matching_files(str(tmp_path / "*.parquet")) == [str(tmp_path / f"part-{part}.parquet") for part in (0, 1)]
    assert matching_files(str(tmp_path / "part-1.parquet")) == [str(tmp_path / "part-1.parquet")]


@pytest.mark.parametrize("name", ["history/*.parquet", "nope.csv"])
def test_nothing_matching_is_one_line_naming_the_path(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(ConfigurationError) as error:
        matching_files(path)
    assert str(error.value) == f"no file matches {path!r}"
