"""``knnstream score`` and ``knnstream replay``: the batch jobs.

Each prints a JSON report of what it did on standard output when it ends.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from stream.backfill.settings import ReplaySettings, ScoreSettings
from stream.cli.flags import add_settings_flags, build_settings


def add_backfill_parsers(commands: Any) -> None:
    """Add ``score`` and ``replay`` to the ``knnstream`` subcommands."""
    for name, settings_class, handler, summary in (
        ("score", ScoreSettings, _score, "predict every row of Parquet or CSV files into Parquet"),
        ("replay", ReplaySettings, _replay, "re-score a range of a topic into another topic"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        add_settings_flags(command, settings_class)
        command.set_defaults(handler=handler)


def _score(args: argparse.Namespace) -> int:
    from stream.backfill.score import run_score

    report = run_score(build_settings(ScoreSettings, args))
    rejected = sum(report.rejected.values())
    print(
        f"scored {report.predicted} of {report.records} rows ({rejected} rejected) with"
        f" {report.model}:{report.version} into {report.parts} parts at {report.output}",
        file=sys.stderr,
    )
    _print_report(report)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from stream.backfill.replay import run_replay

    report = run_replay(build_settings(ReplaySettings, args))
    skipped = sum(report.dead_letters.values())
    where = f"to {report.dlq_topic}" if report.dlq_topic else "skipped"
    print(
        f"replayed {report.records} records of {report.input_topic} with {report.model}:{report.version}:"
        f" {report.predicted} predictions to {report.output_topic}, {skipped} bad records {where}",
        file=sys.stderr,
    )
    _print_report(report)
    return 0


def _print_report(report: Any) -> None:
    print(json.dumps(dataclasses.asdict(report), sort_keys=True))
