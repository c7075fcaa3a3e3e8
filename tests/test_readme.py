"""README.md's Usage, run as written on a small generated data set against the real broker.

The commands are read from the README's first ``sh`` block under "## Usage", so the README and
this test cannot drift apart. Only what would collide with other runs on the shared broker and
host is changed: the topic names, the consumer group and the metrics port get fresh values, and
the broker is this test's. ``knnstream`` runs as ``python -m stream`` of this checkout; ``serve``
runs in the background (the README has it in a terminal of its own) until the last command read
the predictions.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from stream.sink.admin import delete_topics_after_use
from tests.helpers import free_port, read_output, start_worker, wait_healthy, write_history

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[1]
TOPIC_FLAGS = {"--input-topic", "--output-topic", "--dlq-topic", "--topic"}


def usage_commands(readme: str) -> list[list[str]]:
    """The commands of the Usage section's first sh block: continuation lines joined, comments dropped."""
    section = readme.split("\n## Usage", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README.md's Usage section has no sh block"
    joined = block.group(1).replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def localised(words: list[str], names: dict[str, str], bootstrap: str, metrics_port: int) -> list[str]:
    """The command with this run's topics, group, port and broker, and this checkout's programs."""
    changed = []
    for index, word in enumerate(words):
        before = words[index - 1] if index else ""
        if before in TOPIC_FLAGS or before == "consume":
            word = names[word]
        elif before == "--group-id":
            word = names["group"]
        elif before == "--metrics-port":
            word = str(metrics_port)
        elif before == "--bootstrap-servers":
            word = bootstrap
        changed.append(word)
    if changed[0] == "knnstream":
        return [sys.executable, "-m", "stream", *changed[1:]]
    assert changed[:2] == ["bash", "deploy/kafka.sh"], f"a README command this test does not know: {words}"
    return ["bash", str(REPO / "deploy" / "kafka.sh"), *changed[2:]]


def test_the_readme_usage_runs_as_written_and_answers_every_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    commands = usage_commands((REPO / "README.md").read_text())
    assert [words[:2] for words in commands if words[0] == "knnstream"] == [
        ["knnstream", "topics"],
        ["knnstream", "train"],
        ["knnstream", "serve"],
        ["knnstream", "produce"],
    ]
    history = tmp_path / "history"
    history.mkdir()
    for part in range(2):
        write_history(history / f"part-{part}.parquet", rows=300, seed=part)
    records = sum(len(pd.read_parquet(path)) for path in history.iterdir())
    suffix = uuid.uuid4().hex[:10]
    names = {
        "features": f"readme-features-{suffix}",
        "predictions": f"readme-predictions-{suffix}",
        "features.dlq": f"readme-dlq-{suffix}",
        "group": f"readme-{suffix}",
    }
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "KNNSTREAM_KAFKA_PORT": kafka_bootstrap.rpartition(":")[2]}
    worker = None
    outputs = []
    try:
        for words in commands:
            command = localised(words, names, kafka_bootstrap, port)
            if words[:2] == ["knnstream", "serve"]:  # start_worker runs `python -m stream serve`
                worker = start_worker(command[4:], env=env, cwd=tmp_path, start_new_session=True)
                wait_healthy(worker, port, timeout_s=120)
                continue
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{shlex.join(words)} failed: {done.stderr[-3000:]}"
            outputs.append(done.stdout)
        assert worker is not None and worker.poll() is None, "serve stopped early"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, read_output(worker)[-3000:]
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        delete_topics_after_use(kafka_bootstrap, [names["features"], names["predictions"], names["features.dlq"]])
    printed = [line.split("\t", 1) for line in outputs[-1].splitlines() if line.strip()]
    predictions = [json.loads(value) for _, value in printed]
    assert all(key == str(document["id"]) for (key, _), document in zip(printed, predictions, strict=True))
    by_id = Counter(str(document["id"]) for document in predictions)
    assert len(predictions) == records, f"{len(predictions)} predictions for {records} records"
    assert set(by_id.values()) == {1}, "one prediction per record"
    assert {document["prediction"] for document in predictions} <= set(range(4))
