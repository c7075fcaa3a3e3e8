"""Promise 11: bad configuration fails at start with one clear message and a non-zero exit, no
traceback, and no half-started worker (no Dask cluster, no process left behind).

tests/stream/serve/test_worker.py::test_bad_configuration_fails_at_start_with_one_clear_line covers
the first four cases with a trained model; this adds the others and the half-start checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from model_store import Manifest
from tests.helpers import N_FEATURES, free_port
from tests.stream.guarantees.scenario import MODEL_NAME, MODEL_REF, report
from tests.stream.guarantees.topics import Topics

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    group_left: bool  # some process of the worker's session outlived it


def _serve(*args: str) -> Outcome:
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
            worker.communicate(timeout=30)
    try:
        os.killpg(worker.pid, 0)
        left = True
        os.killpg(worker.pid, 9)
    except ProcessLookupError:
        left = False
    return Outcome(worker.returncode, stderr, left)


def test_bad_configuration_fails_at_start_with_one_clear_message(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    record_property: Callable[[str, object], None],
) -> None:
    names = topics(1)
    good = {
        "--bootstrap-servers": kafka_bootstrap,
        "--input-topic": names.input,
        "--output-topic": names.output,
        "--dlq-topic": names.dlq,
        "--model": MODEL_REF,
        "--group-id": group_id,
    }
    cases = {
        "unreachable broker": ({"--bootstrap-servers": f"127.0.0.1:{free_port()}"}, "cannot reach Kafka"),
        "missing input topic": ({"--input-topic": "no-such-input"}, "missing topic(s) no-such-input"),
        "missing output topic": ({"--output-topic": "no-such-output"}, "missing topic(s) no-such-output"),
        "missing dead-letter topic": ({"--dlq-topic": "no-such-dlq"}, "missing topic(s) no-such-dlq"),
        "model not found": ({"--model": "nosuchmodel@production"}, "nosuchmodel"),
        "alias not found": ({"--model": f"{MODEL_NAME}@nosuchalias"}, "nosuchalias"),
        "version not found": ({"--model": f"{MODEL_NAME}:20000101T000000.000000Z-00000000"}, "20000101T000000"),
        "feature count": ({"--expected-features": str(N_FEATURES + 1)}, f"takes {N_FEATURES}"),
    }
    common = ["--store", tmp_store, "--backend", "cpu", "--metrics-host", "127.0.0.1", "--metrics-port", "0"]
    failures = []
    for case, (change, expected) in cases.items():
        arguments = [item for flag, value in {**good, **change}.items() for item in (flag, value)]
        outcome = _serve(*arguments, *common)
        lines = outcome.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("knnstream serve: error:")]
        problems = [
            problem
            for problem, failed in (
                (f"exit code {outcome.code}", outcome.code != 1),
                (f"{len(errors)} error lines", len(errors) != 1),
                ("not the last line", not lines or lines[-1] not in errors),
                (f"no {expected!r}", not errors or expected not in errors[0]),
                ("a traceback", "Traceback" in outcome.stderr),
                ("a Dask cluster was started", "Dask cluster" in outcome.stderr),
                ("processes left behind", outcome.group_left),
            )
            if failed
        ]
        if problems:
            failures.append(f"{case}: {', '.join(problems)}; stderr ends {outcome.stderr[-800:]!r}")
        else:
            print(f"[guarantees] {case}: {errors[0]}")
    report(record_property, "bad configuration", cases=len(cases), failing_cleanly=len(cases) - len(failures))
    assert not failures, "\n".join(failures)
