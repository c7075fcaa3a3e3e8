"""``produce --data``'s records: the model's columns in its order, the label left out, ids that are
row numbers across every file of a glob, and JSON lines sent as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stream.demo.files import file_records
from stream.errors import ConfigurationError


@pytest.fixture
def two_files(tmp_path: Path) -> str:
    for part in range(2):
        frame = pd.DataFrame({"b": [1.0 + part, 2.0], "a": [3.0, 4.0], "label": [0, 1], "name": ["x", "y"]})
        frame.to_csv(tmp_path / f"part-{part}.csv", index=False)
    return str(tmp_path / "*.csv")


def test_the_models_columns_in_its_order_and_row_numbers_across_files(two_files: str) -> None:
    records = list(file_records(two_files, None, feature_names=("a", "b")))
    assert [record.id for record in records] == ["0", "1", "2", "3"]
    assert [record.features for record in records] == [[3.0, 1.0], [4.0, 2.0], [3.0, 2.0], [4.0, 2.0]]


def test_the_label_is_left_out_of_the_numeric_columns(two_files: str) -> None:
    assert {tuple(record.features) for record in file_records(two_files, None, label="label")} == {
        (1.0, 3.0),
        (2.0, 4.0),
        (2.0, 3.0),
    }


def test_a_missing_column_is_named_with_the_files_columns(two_files: str) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"the model's feature column\(s\) c are not in .*part-0\.csv; its columns are b, a, label, name",
    ):
        list(file_records(two_files, None, feature_names=("a", "c")))
    with pytest.raises(ConfigurationError, match="label column 'target' is not in"):
        list(file_records(two_files, None, label="target"))


def test_json_lines_of_feature_lists_keep_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"id": f"o-{i}", "features": [i, i + 0.5]}) + "\n" for i in range(3)))
    records = list(file_records(str(path), None))
    assert [(record.id, record.features) for record in records] == [(f"o-{i}", [i, i + 0.5]) for i in range(3)]
