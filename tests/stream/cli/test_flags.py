"""Flags and variables: a variable means one thing in every command that reads it, and each help
line names one default and the variable."""

from __future__ import annotations

import argparse

import pytest

from stream.cli.flags import build_settings
from stream.cli.main import build_parser
from stream.settings import BenchSettings, DemoSettings, ProduceSettings, TrainSettings


def test_a_shared_flag_name_of_two_meanings_reads_a_variable_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNNSTREAM_FEATURES", "alcohol,hue")  # train's column list
    monkeypatch.setenv("KNNSTREAM_K", "auto")  # train's k
    assert TrainSettings(data="d", label="l", name="n").feature_list() == ["alcohol", "hue"]
    assert TrainSettings(data="d", label="l", name="n").k == "auto"
    assert ProduceSettings().features == 16 and BenchSettings().k == 5 and DemoSettings().k == 5
    monkeypatch.setenv("KNNSTREAM_PRODUCE_FEATURES", "13")
    monkeypatch.setenv("KNNSTREAM_BENCH_K", "7")
    monkeypatch.setenv("KNNSTREAM_DEMO_FEATURES", "8")
    assert ProduceSettings().features == 13 and BenchSettings().k == 7 and DemoSettings().features == 8


def test_the_flag_wins_over_the_commands_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNNSTREAM_PRODUCE_FEATURES", "13")
    assert build_settings(ProduceSettings, argparse.Namespace(features="4")).features == 4
    assert ProduceSettings(features=4).features == 4


def test_a_bad_value_of_an_own_variable_names_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNNSTREAM_PRODUCE_FEATURES", "many")
    with pytest.raises(Exception, match="--features: Input should be a valid integer"):
        build_settings(ProduceSettings, argparse.Namespace())


def _help_of(*command: str) -> None:
    """Print the command's help (argparse exits after it)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])


def test_help_lines_show_one_default_and_the_commands_own_variable(capsys: pytest.CaptureFixture[str]) -> None:
    _help_of("produce")
    text = " ".join(capsys.readouterr().out.split())
    assert "id column of --data (default: the row number) (env KNNSTREAM_ID_COLUMN)" in text
    assert "default: None" not in text
    assert "env KNNSTREAM_PRODUCE_FEATURES" in text
    _help_of("bench")
    assert "env KNNSTREAM_BENCH_K" in " ".join(capsys.readouterr().out.split())
