"""The GPU machine's rows files (deploy/gpu/rows/): every row is a bench command that parses and
validates, so a call on the GPU machine is not spent on a typo."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from stream.cli.flags import build_settings
from stream.cli.main import build_parser
from stream.settings import BenchSettings

ROWS = Path(__file__).resolve().parents[2] / "deploy" / "gpu" / "rows"


def _rows() -> list[tuple[str, str, list[str]]]:
    rows = []
    for path in sorted(ROWS.glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, *args = shlex.split(line)
                rows.append((path.name, name, args))
    return rows


def test_there_are_rows_files() -> None:
    assert {name for name, _, _ in _rows()} >= {"bench-one-gpu.txt", "stream-one-gpu.txt"}


@pytest.mark.parametrize(("file", "name", "args"), _rows(), ids=lambda value: value if isinstance(value, str) else "")
def test_each_row_is_a_valid_bench_command(file: str, name: str, args: list[str]) -> None:
    parsed = build_parser().parse_args(["bench", *args])
    settings = build_settings(BenchSettings, parsed)
    assert settings.backend == "gpu", f"{file}: {name} runs on the GPU backend"
