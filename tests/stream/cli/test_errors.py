"""A first hour's mistakes: each is one line on standard error naming the fix, exit code 1, and
an end within a bound (no command waits for a broker that is not there), against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import N_FEATURES, free_port, write_history
from tests.stream.guarantees.scenario import MODEL_REF, publish_model

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
# Far more than any of these needs (a broker is given 10 s to answer); a hang would run past it.
BOUND_S = 60


def _run(cwd: Path, *args: str) -> tuple[int, list[str]]:
    """The command's exit code and the lines it wrote to standard error."""
    done = subprocess.run(
        [sys.executable, "-m", "stream", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def _cases(kafka_bootstrap: str, store: str, topic: str) -> dict[str, tuple[list[str], str]]:
    """Each mistake: the command and what its error line must say."""
    unreachable = f"127.0.0.1:{free_port()}"
    return {
        "serve, unreachable broker": (
            ["serve", "--bootstrap-servers", unreachable, "--model", MODEL_REF, "--store", store,
             "--backend", "cpu", "--metrics-port", "0"],
            f"cannot reach Kafka at {unreachable}",
        ),
        "serve, no consumers": (
            ["serve", "--consumers", "0", "--model", MODEL_REF, "--store", store, "--metrics-port", "0"],
            "--consumers: Input should be greater than or equal to 1",
        ),
        "serve --consumers 2, a topic that does not exist": (
            ["serve", "--bootstrap-servers", kafka_bootstrap, "--input-topic", f"{topic}-featurs", "--consumers", "2",
             "--model", MODEL_REF, "--store", store, "--backend", "cpu", "--metrics-port", "0"],
            f"missing topic(s) {topic}-featurs",
        ),
        "produce, unreachable broker": (
            ["produce", "--bootstrap-servers", unreachable, "--synthetic", "10"],
            f"cannot reach Kafka at {unreachable}",
        ),
        "topics create, unreachable broker": (
            ["topics", "create", "--bootstrap-servers", unreachable],
            f"cannot reach Kafka at {unreachable}",
        ),
        "produce, missing file": (["produce", "--data", "nope.csv"], "no file matches 'nope.csv'"),
        "produce, a glob matching nothing": (
            ["produce", "--data", "history/*.parquet"],
            "no file matches 'history/*.parquet'",
        ),
        "train, a glob matching nothing": (
            ["train", "--data", "history/*.parquet", "--label", "label", "--name", "fraud", "--store", store],
            "no file matches 'history/*.parquet'",
        ),
        "models list, no models in the store": (
            ["models", "list", "--store", "./modles"],
            "no models in ./modles: train one with knnstream train",
        ),
        "produce, a topic that does not exist": (
            ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", f"{topic}-featurs", "--synthetic", "10"],
            "knnstream topics create",
        ),
        "produce, the feature count of another model": (
            ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--synthetic", "10",
             "--features", str(N_FEATURES + 10), "--model", MODEL_REF, "--store", store],
            f"takes {N_FEATURES} features (set --features {N_FEATURES})",
        ),
        "produce, a label column that is not there": (
            ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--data", "data.csv",
             "--label", "target"],
            "label column 'target' is not in",
        ),
    }  # fmt: skip


def test_each_mistake_is_one_line_naming_the_fix_and_exit_code_1(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_store: str, tmp_path: Path
) -> None:
    publish_model(tmp_store, rows=500)
    write_history(tmp_path / "data.csv", rows=20, fmt="csv")
    topic = new_topic("features")
    failures = []
    for case, (args, expected) in _cases(kafka_bootstrap, tmp_store, topic).items():
        code, lines = _run(tmp_path, *args)
        command = args[0]
        if code != 1 or len(lines) != 1 or not lines[0].startswith(f"knnstream {command}: error: "):
            failures.append(f"{case}: exit code {code}, {len(lines)} lines: {lines[-5:]}")
        elif expected not in lines[0]:
            failures.append(f"{case}: {expected!r} not in {lines[0]!r}")
    assert not failures, "\n".join(failures)
    assert _topic_absent(kafka_bootstrap, f"{topic}-featurs"), "produce created the misspelt topic"


def _topic_absent(bootstrap: str, topic: str) -> bool:
    from stream.sink.admin import missing_topics

    return missing_topics(bootstrap, [topic]) == [topic]


def test_produce_sends_the_models_features_and_leaves_out_the_label(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_store: str, tmp_path: Path
) -> None:
    """With --model the label column stays out (the model's feature names are known), and with
    --label alone too; every record then has as many features as the model takes."""
    from tests.helpers import consume_until, values

    publish_model(tmp_store, rows=500)
    write_history(tmp_path / "data.csv", rows=30, fmt="csv")
    for extra in (["--model", MODEL_REF, "--store", tmp_store], ["--label", "label"]):
        topic = new_topic("features")
        code, lines = _run(tmp_path, "produce", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                           "--data", "data.csv", *extra)  # fmt: skip
        assert code == 0, lines
        records = values(consume_until(kafka_bootstrap, topic, lambda got: len(got) >= 30, timeout_s=60))
        assert sorted(int(record["id"]) for record in records) == list(range(30))
        assert {len(record["features"]) for record in records} == {N_FEATURES}
