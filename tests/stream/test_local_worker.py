"""Reading a running worker's metrics, as the benchmark does."""

from __future__ import annotations

from stream.local_worker import scrape_totals
from stream.metrics import Health, MetricsServer, WorkerMetrics


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
        totals = scrape_totals(server.port, names)
        assert totals["knnstream_records_decoded_on_driver_total"] == 7
        assert totals["knnstream_records_consumed_total"] == 100
        assert totals["knnstream_records_predicted_total"] == 0
        assert totals["knnstream_records"] == 0  # a prefix is not a name
    finally:
        server.stop()
