"""The local Dask cluster: a thread per worker for each batch that may be under way."""

from __future__ import annotations

from stream.predict.cluster import MIN_THREADS_PER_WORKER, close_client, start_client, threads_per_worker


def test_a_worker_gets_a_thread_for_each_batch_in_flight_and_never_fewer_than_two() -> None:
    assert [threads_per_worker(n) for n in (1, 2, 3, 4)] == [MIN_THREADS_PER_WORKER, 2, 3, 4]


def test_the_local_cluster_starts_its_workers_with_the_threads_asked_for() -> None:
    client = start_client("cpu", None, 1, threads=3)
    try:
        assert list(client.nthreads().values()) == [3]
    finally:
        close_client(client)
