"""``knnstream bench`` end to end on a tiny workload, against the real broker: the figures it
prints are the ones it measured, and a soak samples the worker's memory once per window."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from stream.bench import run as bench
from stream.bench.data import correlated
from stream.settings import BenchSettings
from tests.helpers import free_consecutive_ports, free_port

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("record_format", ["json", "float32"])
def test_a_small_bench_measures_both_rates_latency_and_memory(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], record_format: str
) -> None:
    monkeypatch.setattr(bench, "SOAK_WINDOW_S", 1.0)
    settings = BenchSettings(
        bootstrap_servers=kafka_bootstrap, backend="cpu", index_rows=2_000, features=8, k=3, batch_size=200,
        records=1_000, partitions=2, workers=1, latency_seconds=1, soak_seconds=2, json_output=True,
        metrics_port=free_port(), batch_max_wait_ms=50, format=record_format,
    )  # fmt: skip
    result = bench.run_bench(settings)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["e2e_rows_per_s"] == result.e2e_rows_per_s > 0
    assert printed["raw_rows_per_s"] == result.raw_rows_per_s > 0
    assert printed["ratio"] == pytest.approx(result.e2e_rows_per_s / result.raw_rows_per_s)
    assert printed["transport_rows_per_s"] == result.transport_rows_per_s > 0
    assert printed["e2e_over_transport"] == pytest.approx(result.e2e_rows_per_s / result.transport_rows_per_s)
    stages = {entry.split("=")[0] for entry in printed["backlog_stage_seconds"]}
    assert {"driver/decode", "driver/dispatch", "driver/commit", "worker/predict", "worker/produce"} <= stages
    assert 0 < printed["p50_ms"] <= printed["p99_ms"]
    assert printed["batch_max_wait_ms"] == 50
    assert printed["format"] == record_format
    assert printed["offered_rows_per_s"] == pytest.approx(result.e2e_rows_per_s / 2)
    # the backlog's time = its start-up (to the first prediction) + the time after it
    backlog_s = settings.records / printed["e2e_rows_per_s"]
    assert 0 < printed["first_prediction_s"] < backlog_s
    after_first_s = (settings.records - 1) / printed["e2e_after_first_rows_per_s"]
    assert printed["first_prediction_s"] + after_first_s == pytest.approx(backlog_s, abs=0.05)
    assert printed["backlog_decoded_on_driver"] == 0  # clean records: every one parsed on the workers
    # the burst was acknowledged about when its last record was read, well before the last prediction
    assert 0 <= printed["backlog_sent_s"] < backlog_s + 1.0
    # the bench's own CPU during the backlog only (in ticks of 10 ms: a short one may read 0), not
    # since its start, which took seconds of making records and timing raw predictions
    assert 0 <= printed["backlog_bench_cpu_s"] <= backlog_s * (os.cpu_count() or 1)
    assert 0 <= printed["backlog_driver_gc_s"] < backlog_s
    # the latency phase's batches: every record of the phase in one of them, none of the backlog's
    latency_records = int(printed["offered_rows_per_s"] * settings.latency_seconds)
    batches = printed["latency_batches"]
    assert batches * printed["latency_batch_records_mean"] == pytest.approx(latency_records, abs=0.05 * batches)
    assert printed["latency_predict_ms_mean"] > 0
    assert printed["latency_batch_ms_mean"] > 0
    assert len(printed["soak_worker_rss_mib"]) == 2
    samples = zip(printed["soak_worker_rss_mib"], printed["soak_tree_rss_mib"], strict=True)
    assert all(0 < own <= tree for own, tree in samples)


def test_replicas_share_the_backlog_in_one_consumer_group(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = BenchSettings(
        bootstrap_servers=kafka_bootstrap, backend="cpu", index_rows=2_000, features=8, k=3, batch_size=200,
        records=2_000, partitions=4, workers=2, replicas=2, latency_seconds=1, json_output=True,
        metrics_port=free_consecutive_ports(2), batch_max_wait_ms=50, format="float32",
    )  # fmt: skip
    bench.run_bench(settings)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["replicas"] == 2 and printed["e2e_rows_per_s"] > 0
    by_replica = printed["backlog_predicted_by_replica"]
    assert len(by_replica) == 2 and all(count > 0 for count in by_replica)  # both consumed a share
    assert sum(by_replica) >= settings.records  # at least once: a share may be predicted again after a rebalance
    # One Dask worker a replica runs as threads of its serving process: its CPU is the driver's.
    assert printed["backlog_driver_cpu_s"] > 0 and printed["backlog_dask_cpu_s"] == 0
    last = printed["backlog_progress"][-1]  # taken as the sampling stopped, after the last prediction read
    assert len(last) == 2 + settings.replicas and last[1] == settings.records


def test_a_bench_of_a_users_table_with_an_index_reports_its_recall(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    features, labels = correlated(6_000, 8, seed=2)
    frame = pd.DataFrame(features, columns=[f"c{i}" for i in range(8)])
    frame["kind"] = labels
    frame.to_parquet(tmp_path / "mine.parquet")
    settings = BenchSettings(
        bootstrap_servers=kafka_bootstrap, backend="cpu", data=str(tmp_path / "mine.parquet"), label="kind",
        index="ivf-flat", k=3, batch_size=200, records=500, partitions=2, workers=1, latency_seconds=1,
        json_output=True, metrics_port=free_port(), batch_max_wait_ms=50,
    )  # fmt: skip
    bench.run_bench(settings)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["index_rows"] == 5_400 and printed["features"] == 8  # a tenth held out as the queries
    assert printed["index"].startswith("ivf-flat n_lists=") and printed["recall"] >= 0.99
    assert printed["data_kind"] == f"table {tmp_path / 'mine.parquet'}"
    assert printed["raw_rows_per_s"] > 0 and printed["e2e_rows_per_s"] > 0
