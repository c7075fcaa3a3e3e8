"""The local Dask cluster: a thread per worker for each batch that may be under way."""

from __future__ import annotations

import logging

import pytest

from stream.predict.cluster import (
    MIN_THREADS_PER_WORKER,
    close_client,
    serves_in_process,
    start_client,
    threads_per_worker,
    warn_if_short_of_threads,
)


def test_a_worker_gets_a_thread_for_each_batch_in_flight_and_never_fewer_than_two() -> None:
    assert [threads_per_worker(n) for n in (1, 2, 3, 4)] == [MIN_THREADS_PER_WORKER, 2, 3, 4]


def test_the_local_cluster_starts_its_workers_with_the_threads_asked_for() -> None:
    client = start_client("cpu", None, 1, threads=3)
    try:
        assert list(client.nthreads().values()) == [3]
    finally:
        close_client(client)


def test_workers_with_fewer_threads_than_the_batches_in_flight_are_named(caplog: pytest.LogCaptureFixture) -> None:
    client = start_client("cpu", None, 1, threads=1)
    try:
        with caplog.at_level(logging.WARNING, logger="stream.predict.cluster"):
            short = warn_if_short_of_threads(client, 2)
        assert short == list(client.nthreads())
        assert "runs 1 thread(s), fewer than the 2" in caplog.text and "--nthreads 2" in caplog.text
        assert warn_if_short_of_threads(client, 1) == []
    finally:
        close_client(client)


def test_a_serving_worker_runs_one_cpu_dask_worker_in_its_own_process_and_several_as_processes() -> None:
    assert serves_in_process("cpu", None, 1)
    assert not serves_in_process("cpu", None, 2)
    assert not serves_in_process("gpu", None, 1)
    assert not serves_in_process("cpu", "tcp://scheduler:8786", 1)
    assert not serves_in_process("cpu", None, 1, "processes")
    assert serves_in_process("cpu", None, 2, "threads")
    assert not serves_in_process("gpu", None, 1, "threads")


def test_the_in_process_cluster_runs_its_worker_as_threads_here_with_one_openmp_thread() -> None:
    from threadpoolctl import threadpool_info

    client = start_client("cpu", None, 1, threads=3, in_process=True)
    try:
        assert list(client.nthreads().values()) == [3]
        assert client.cluster.processes is False
        assert all(address.startswith("inproc://") for address in client.nthreads())
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"} == {1}
    finally:
        close_client(client)
