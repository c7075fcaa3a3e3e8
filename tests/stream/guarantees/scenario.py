"""The shared ground of the delivery-guarantee scenarios: their scale, the model, the worker's
defaults, polling, and the figures.

Keyed feature records go in (:mod:`.topics`), one or more ``knnstream serve`` processes run and
are killed, stalled, restarted (:mod:`.workers`), predictions come out (:mod:`.reading`), and the
figures (lost, duplicated, ...) are printed and attached to the test report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from model_store import Manifest, ManifestDraft, ModelStore
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from tests.helpers import N_FEATURES, blobs

SCALE_VARIABLE = "KNNSTREAM_TEST_SCALE"
MODEL_NAME = "blobs"
MODEL_REF = f"{MODEL_NAME}@production"
MAX_IN_FLIGHT = 2  # the default of --max-batches-in-flight
# A batch is held in its prediction by stopping the Dask worker processes: a worker whose batches
# are held runs its one Dask worker as a process, not as threads of its own (the CPU default).
DASK_WORKER_PROCESSES = "--local-dask-workers=processes"
SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms: a dead member leaves the group soonest
# A producer queue of 10 records: delivery waits for acknowledgements every 10 records, so a
# transaction stays open long enough for a kill to land inside it.
SLOW_OUTPUT = "--producer-queue-max-messages=10"


@dataclass(frozen=True)
class Scale:
    """How big the heavy scenarios are: ``ci`` (default, a 2-core machine) or ``full``."""

    name: str
    records: int
    partitions: int
    batch: int


SCALES = {
    "ci": Scale("ci", records=12_000, partitions=6, batch=300),
    "full": Scale("full", records=100_000, partitions=6, batch=2_000),
}


def current_scale() -> Scale:
    name = os.environ.get(SCALE_VARIABLE, "ci")
    if name not in SCALES:
        raise pytest.UsageError(f"{SCALE_VARIABLE} must be one of {sorted(SCALES)}, not {name!r}")
    return SCALES[name]


# ---------------------------------------------------------------------------------------- model


def publish_model(store: str, rows: int, alias: str = "production", seed: int = 0) -> Manifest:
    """A classification index of ``rows`` blob points, published straight to the store (no Dask)."""
    features, labels = blobs(rows, seed)
    index = index_from_training_data("classification", 5, "euclidean", features, labels)
    draft = ManifestDraft(
        task="classification",
        k=5,
        metric="euclidean",
        feature_names=tuple(f"f{i}" for i in range(N_FEATURES)),
        n_features=N_FEATURES,
        classes=tuple(index.classes.tolist()),
        training_rows=rows,
        backend="cpu",
        format=FORMAT,
    )
    return ModelStore(store).publish(MODEL_NAME, {MODEL_FILE: index.to_npz()}, draft, aliases=[alias])


# ------------------------------------------------------------------------------------ polling


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0, interval_s: float = 0.05) -> float:
    """Poll ``condition``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


# -------------------------------------------------------------------------------------- figures


def report(record_property: Callable[[str, object], None], scenario: str, **figures: object) -> str:
    """Print the scenario's figures and attach them to the test report (shown in the terminal summary)."""
    line = f"{scenario}: " + ", ".join(f"{name}={_format(value)}" for name, value in figures.items())
    print(f"[guarantees] {line}")
    record_property("guarantee", line)
    return line


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
