"""Reading a running worker's metrics, as the benchmark does."""

from __future__ import annotations

import pytest

from stream.demo.local_worker import scrape_totals, visible_devices
from stream.errors import KnnStreamError
from stream.predict.cluster import visible_gpus
from stream.serve.metrics import Health, MetricsServer, WorkerMetrics


def test_a_total_sums_every_series_of_one_name_and_no_other() -> None:
    metrics = WorkerMetrics()
    metrics.decoded_on_driver.labels("features", "part_refused").inc(5)
    metrics.decoded_on_driver.labels("features", "batch_not_clean").inc(2)
    metrics.consumed.labels("features").inc(100)
    server = MetricsServer(metrics, Health(stale_after_s=60), "127.0.0.1", 0)
    server.start()
    try:
        names = [
            "knnstream_records_decoded_on_driver_total",
            "knnstream_records_consumed_total",
            "knnstream_records_predicted_total",
            "knnstream_records",
        ]
        totals = scrape_totals([server.port], names)
        assert totals["knnstream_records_decoded_on_driver_total"] == 7
        assert totals["knnstream_records_consumed_total"] == 100
        assert totals["knnstream_records_predicted_total"] == 0
        assert totals["knnstream_records"] == 0  # a prefix is not a name
    finally:
        server.stop()


def test_the_totals_of_several_workers_are_summed() -> None:
    servers = []
    for consumed in (100, 250):
        metrics = WorkerMetrics()
        metrics.consumed.labels("features").inc(consumed)
        servers.append(MetricsServer(metrics, Health(stale_after_s=60), "127.0.0.1", 0))
        servers[-1].start()
    try:
        totals = scrape_totals([server.port for server in servers], ["knnstream_records_consumed_total"])
        assert totals["knnstream_records_consumed_total"] == 350
    finally:
        for server in servers:
            server.stop()


def test_each_replica_gets_gpus_of_its_own() -> None:
    assert visible_devices(0, 1, ["0", "1"]) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert visible_devices(1, 2, ["3", "5", "7", "9"]) == {"CUDA_VISIBLE_DEVICES": "7,9"}  # in their order
    with pytest.raises(KnnStreamError, match="needs GPUs 4 to 5; only 4 are visible"):
        visible_devices(2, 2, ["3", "5", "7", "9"])


def test_the_gpus_a_process_may_use_are_those_cuda_visible_devices_lists() -> None:
    assert visible_gpus("3, 5,7") == ["3", "5", "7"]
    assert visible_gpus("GPU-8a1b,GPU-77c0") == ["GPU-8a1b", "GPU-77c0"]  # UUIDs too
    assert visible_gpus("") == []  # set and empty: no GPU at all
