"""Test helpers: training data, a trained model in a store, and a worker process."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer

from stream.demo.local_worker import wait_worker_healthy
from stream.errors import KnnStreamError

N_FEATURES = 6


def blobs(rows: int, seed: int, n_features: int = N_FEATURES, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    centres = np.random.default_rng(123).uniform(-6, 6, size=(classes, n_features))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    return centres[labels] + rng.normal(scale=1.5, size=(rows, n_features)), labels


def write_history(path: Path, rows: int = 3000, seed: int = 0, fmt: str = "parquet") -> Path:
    features, labels = blobs(rows, seed)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame["label"] = labels
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


# Ports for the workers a test starts are drawn below the kernel's range of ephemeral ports: one
# drawn from that range may be given to some client's outgoing connection (the tests open many, to
# the broker and between Dask's processes) between the probe and the worker's own bind.
LOWEST_PORT = 20_000
_draws = random.Random(os.getpid())  # test processes running side by side draw different ports
_handed_out: set[int] = set()  # a port given once may not be bound yet: never given again


def free_port() -> int:
    return free_consecutive_ports(1)


def _kernels_port() -> int:
    """A free port the kernel picks (from its ephemeral range: where that range leaves too few below it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; elsewhere the range the probes bind in must simply be free


def free_consecutive_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free on 127.0.0.1 together, below the
    ephemeral range."""
    highest_first = _ephemeral_ports_start() - count
    for _ in range(200):
        first = _draws.randrange(LOWEST_PORT, highest_first) if highest_first > LOWEST_PORT + 1000 else _kernels_port()
        if first + count - 1 > 65535 or _handed_out.intersection(range(first, first + count)):
            continue
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            _handed_out.update(range(first, first + count))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


_LOGS: dict[int, Path] = {}


def start_worker(args: Sequence[str], env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """``knnstream serve`` in a subprocess; its output goes to a file (a pipe could fill up and block it)."""
    descriptor, path = tempfile.mkstemp(prefix="knnstream-worker-", suffix=".log")
    with os.fdopen(descriptor, "wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream", "serve", *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **popen,
        )
    _LOGS[worker.pid] = Path(path)
    return worker


def wait_healthy(worker: subprocess.Popen[bytes], port: int, timeout_s: float = 90.0) -> None:
    try:
        wait_worker_healthy(worker, port, timeout_s)
    except KnnStreamError as exc:
        raise AssertionError(f"{exc}: {read_output(worker)}") from exc


def read_output(worker: subprocess.Popen[bytes]) -> str:
    """Everything the worker printed so far."""
    return _LOGS[worker.pid].read_text(errors="replace")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def consume_until(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout_s: float = 120.0) -> list[Any]:
    """Every message of ``topic`` from the start, until ``done(messages)`` or the timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(messages) and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(num_messages=5000, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return messages


def values(messages: Sequence[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in messages]
