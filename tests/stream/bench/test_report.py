"""The bench's table: every figure of the run, by name, and the soak only when there was one."""

from __future__ import annotations

from dataclasses import replace

from stream.bench.report import BenchResult, format_table

RESULT = BenchResult(
    backend="gpu", index_rows=1_000_000, features=32, k=5, batch_size=50_000, records=2_000_000, partitions=8,
    workers=1, raw_rows_per_s=191_642.0, e2e_rows_per_s=177_443.0, ratio=0.926, offered_rows_per_s=88_721.5,
    p50_ms=340.2, p99_ms=478.4, machine="host (x86_64, NVIDIA H200)", date="2026-11-27", first_prediction_s=1.39,
    e2e_after_first_rows_per_s=202_412.0, backlog_decoded_on_driver=0, backlog_driver_gc_s=0.14,
    latency_batches=13, latency_batch_records_mean=20_474.2, latency_batch_ms_mean=583.2, latency_predict_ms_mean=201.4,
    backlog_driver_cpu_s=5.64, backlog_dask_cpu_s=20.5, backlog_predicted_by_replica=(2_000_000,), backlog_sent_s=2.4,
    transport_rows_per_s=200_000.0, e2e_over_transport=0.887,
)  # fmt: skip


def test_the_table_names_every_figure() -> None:
    text = format_table(RESULT)
    assert "191,642 rows/s" in text and "177,443 rows/s (2,000,000 records)" in text
    assert "(b)/(a)             0.93" in text
    assert "(t) transport loop  200,000 rows/s" in text and "(b)/(t)             0.89" in text
    assert "340.2 ms / 478.4 ms at 88,722/s" in text
    assert "13 of 20,474 records on average, 583.2 ms from consumed to committed" in text
    assert "202,412 rows/s (first prediction after 1.39 s)" in text
    assert "0 records (0: the workers parsed them all)" in text
    assert "0.14 s during the backlog" in text
    assert "host (x86_64, NVIDIA H200)" in text and "2026-11-27" in text
    # 2,000,000 records at 177,443/s: a backlog of 11.27 s, the driver busy half of it
    assert "driver 5.64 s (50% of a core each), Dask workers 20.50 s, over 11.27 s of backlog" in text
    assert "1 in one knnstream serve" in text and "2,000,000 records" in text
    assert "2.40 s (the backlog's burst" in text
    assert "1 sender of the burst, 1 reader of the predictions" in text
    assert "soak" not in text


def test_replicas_show_each_ones_records_and_the_cpu_of_each_driver() -> None:
    text = format_table(replace(RESULT, workers=2, replicas=2, backlog_predicted_by_replica=(1_000_123, 999_877)))
    assert "2 in 2 knnstream serve replicas (one consumer group)" in text
    assert "1,000,123 / 999,877 records" in text
    assert "(25% of a core each)" in text  # 5.64 s of two drivers over 11.27 s


def test_a_soak_shows_the_first_last_and_largest_rss() -> None:
    soaked = replace(
        RESULT, soak_seconds=600.0, soak_worker_rss_mib=(188.0, 192.0, 190.0), soak_tree_rss_mib=(900.0, 910.0, 905.0)
    )
    line = next(line for line in format_table(soaked).splitlines() if line.startswith("soak"))
    assert "600 s: worker RSS 188 → 190 MiB (max 192; with Dask 900 → 905 MiB)" in line


def test_each_gpu_sampled_gets_a_line_before_the_ratio() -> None:
    lines = ("GPU-a: 93% utilised, never working", "GPU-b: 90% utilised, never working")
    text = format_table(replace(RESULT, backlog_gpus=lines, backlog_bench_cpu_s=3.2))
    rows = text.splitlines()
    first = rows.index("  GPUs              GPU-a: 93% utilised, never working")
    assert rows[first + 1] == "  GPUs              GPU-b: 90% utilised, never working"
    assert rows[first + 2].startswith("(b)/(a)")
    assert "the bench's own 3.20 s" in text
    assert "GPUs" not in format_table(RESULT)


def test_the_backlogs_course_is_a_line_of_rates() -> None:
    course = ((1.0, 150_000.0, 100_000.0, 90_000.0),)
    text = format_table(replace(RESULT, backlog_progress=course))
    assert "  course            0.0-1.0 s: read 150k/s, predicted 100k + 90k/s" in text.splitlines()
    assert "  course            not sampled" in format_table(RESULT).splitlines()


def test_the_replicas_gpus_get_a_line_when_they_were_shared_out() -> None:
    text = format_table(replace(RESULT, replicas=2, replica_gpus=("0", "1")))
    assert "  replicas' GPUs    0 / 1" in text.splitlines()
    assert "replicas' GPUs" not in format_table(RESULT)


def test_consumers_show_each_ones_records_and_the_cpu_of_each_driver() -> None:
    text = format_table(replace(RESULT, consumers=2, backlog_predicted_by_replica=(1_000_123, 999_877)))
    assert "1 in one knnstream serve, 2 consumers each on its Dask cluster" in text
    assert "  by consumer       1,000,123 / 999,877 records" in text.splitlines()
    assert "(25% of a core each)" in text  # 5.64 s of two consumers over 11.27 s


def test_the_table_names_the_benchs_own_senders_and_readers() -> None:
    text = format_table(replace(RESULT, backlog_senders=4, output_readers=3))
    assert "bench's processes 4 senders of the burst, 3 readers of the predictions (and of the loop's)" in text
