"""A running worker scraped by promtool and by a real Prometheus server, queried over its API."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from distributed import Client, LocalCluster
from prometheus_client.parser import text_string_to_metric_families

from model_store import Manifest
from stream.demo.local_worker import wait_until_ok
from stream.errors import KnnStreamError
from stream.settings import TrainSettings
from stream.sink.admin import create_topics, delete_topics_after_use
from stream.train.job import train
from tests.deploy.support import DEPLOY, exported_metric_names, require_binary
from tests.helpers import (
    blobs,
    consume_until,
    free_port,
    read_output,
    scrape,
    start_worker,
    wait_healthy,
    write_history,
)

pytestmark = pytest.mark.kafka

RECORDS = 600
PARTITIONS = 3
BAD_VALUES = [b"{not json", b'{"id": "bad-count", "features": [1.0]}']
ALLOWED_LABELS = {
    "topic",
    "partition",
    "reason",
    "stage",
    "name",
    "version",
    "python_version",
    "confluent_kafka_version",
    "librdkafka_version",
    "worker",
    "device",
    "le",
    "role",
    "generation",  # of the garbage collector: 0, 1 or 2
    "where",  # of a stage's time: driver or worker
}


@dataclass(frozen=True)
class RunningWorker:
    port: int
    input_topic: str
    model: Manifest
    ids: list[str]


@pytest.fixture(scope="module")
def running_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorker]:
    """One worker for the module: a model trained, records produced, every prediction read back."""
    workdir = tmp_path_factory.mktemp("scrape")
    store = str(workdir / "store")
    settings = TrainSettings(
        data=str(write_history(workdir / "history.parquet", rows=1500)),
        label="label",
        k="5",
        store=store,
        name="blobs",
        alias="production",
        backend="cpu",
    )
    # An in-process cluster on a free dashboard port: no clash with another cluster's 8787.
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        model = train(settings, client)
    suffix = uuid.uuid4().hex[:12]
    topics = {"in": f"scrape-in-{suffix}", "out": f"scrape-out-{suffix}", "dlq": f"scrape-dlq-{suffix}"}
    create_topics(kafka_bootstrap, [topics["in"]], partitions=PARTITIONS)
    create_topics(kafka_bootstrap, [topics["out"], topics["dlq"]])
    ids = _produce(kafka_bootstrap, topics["in"])
    port = free_port()
    args = [
        *("--bootstrap-servers", kafka_bootstrap, "--group-id", f"g-{suffix}", "--model", "blobs@production"),
        *("--input-topic", topics["in"], "--output-topic", topics["out"], "--dlq-topic", topics["dlq"]),
        *("--store", store, "--backend", "cpu", "--dask-workers", "1"),
        *("--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--statistics-interval-ms", "500"),
        *("--batch-max-records", "200", "--batch-max-wait-ms", "50"),
    ]
    worker = start_worker(args)
    try:
        wait_healthy(worker, port)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= RECORDS)
        assert len(outputs) >= RECORDS, read_output(worker)
        _wait_for_sample(port, "knnstream_records_dead_lettered_total{")  # counted once the batch commits
        yield RunningWorker(port, topics["in"], model, ids)
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=60)
        output = read_output(worker)
        delete_topics_after_use(kafka_bootstrap, list(topics.values()))
        assert exit_code == 0, output


def _produce(bootstrap: str, topic: str) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap})
    features, _ = blobs(RECORDS, seed=4)
    ids = [f"scrape-rec-{uuid.uuid4().hex[:8]}-{i}" for i in range(RECORDS)]
    for record_id, row in zip(ids, features.tolist(), strict=True):
        producer.produce(topic, key=record_id.encode(), value=json.dumps({"id": record_id, "features": row}).encode())
    for number, value in enumerate(BAD_VALUES):
        producer.produce(topic, key=f"scrape-bad-{number}".encode(), value=value)
    assert producer.flush(30) == 0
    return ids


def _wait_for_sample(port: int, sample_start: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sample_start not in scrape(port):
        assert time.monotonic() < deadline, f"no {sample_start} sample after {timeout_s} s"
        time.sleep(0.1)


def _sample_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def test_live_scrape_passes_promtool_check_metrics(running_worker: RunningWorker) -> None:
    body = scrape(running_worker.port)
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_labels_are_bounded_and_names_are_exported(running_worker: RunningWorker) -> None:
    body = scrape(running_worker.port)
    assert not [record_id for record_id in running_worker.ids if record_id in body], "record ids never become labels"
    assert "scrape-bad-" not in body, "record keys never become labels"
    families = text_string_to_metric_families(body)
    samples = [sample for family in families for sample in family.samples]
    label_names = {name for sample in samples for name in sample.labels}
    assert label_names <= ALLOWED_LABELS, sorted(label_names - ALLOWED_LABELS)
    live = {sample.name for sample in samples}
    populated = {
        "knnstream_records_consumed_total",
        "knnstream_records_predicted_total",
        "knnstream_records_dead_lettered_total",
        "knnstream_batch_latency_seconds_bucket",
        "knnstream_predict_duration_seconds_bucket",
        "knnstream_batch_size_records_count",
        "knnstream_inflight_batches",
        "knnstream_model_info",
        "knnstream_build_info",
        "knnstream_last_progress_timestamp_seconds",
        "knnstream_gc_seconds_total",
    }
    assert populated <= live, sorted(populated - live)
    assert populated <= exported_metric_names(), "the registry-derived names the dashboard test uses match the scrape"


def test_the_drivers_garbage_collections_are_timed_from_its_start_up_on(running_worker: RunningWorker) -> None:
    """The start-up's last collection (the one before freezing its heap) is counted: the timing is on."""
    body = scrape(running_worker.port)
    assert (_sample_value(body, "knnstream_gc_collections_total", {"generation": "2"}) or 0) >= 1
    assert (_sample_value(body, "knnstream_gc_seconds_total", {"generation": "2"}) or 0) > 0


def test_model_and_build_info(running_worker: RunningWorker) -> None:
    body = scrape(running_worker.port)
    model = {"name": "blobs", "version": running_worker.model.version}
    assert _sample_value(body, "knnstream_model_info", model) == 1.0
    assert _sample_value(body, "knnstream_build_info", {}) == 1.0


def test_consumer_lag_is_reported_per_partition(running_worker: RunningWorker) -> None:
    """Every partition's lag reaches 0 once every record was predicted and committed."""
    expected = {str(partition): 0.0 for partition in range(PARTITIONS)}
    deadline = time.monotonic() + 30
    lags: dict[str, float] = {}
    while time.monotonic() < deadline:
        lags = {
            sample.labels["partition"]: sample.value
            for family in text_string_to_metric_families(scrape(running_worker.port))
            for sample in family.samples
            if sample.name == "knnstream_consumer_lag_records" and sample.labels["topic"] == running_worker.input_topic
        }
        if lags == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"lag per partition {lags}, expected {expected}")


@pytest.fixture(scope="module")
def prometheus(running_worker: RunningWorker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus, scraping the worker every second with the project's alert rules."""
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "knnstream", "static_configs": [{"targets": [f"127.0.0.1:{running_worker.port}"]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, base)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def _wait_ready(server: subprocess.Popen[bytes], base: str, timeout_s: float = 60.0) -> None:
    try:
        wait_until_ok(server, f"{base}/-/ready", "prometheus", timeout_s)
    except KnnStreamError as exc:
        raise AssertionError(f"{exc}: {read_output(server)}") from exc


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        document = json.loads(answer.read())
    assert document["status"] == "success", document
    return document["data"]


def _query_until(base: str, query: str, expected: float, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    result: list[Any] = []
    while time.monotonic() < deadline:
        result = _api(base, "query", query=query)["result"]
        if len(result) == 1 and float(result[0]["value"][1]) == expected:
            return
        time.sleep(0.25)
    raise AssertionError(f"{query} answered {result}, expected one series of value {expected}")


def test_prometheus_scrapes_the_predicted_counter(running_worker: RunningWorker, prometheus: str) -> None:
    topic = running_worker.input_topic
    _query_until(prometheus, f'knnstream_records_predicted_total{{job="knnstream", topic="{topic}"}}', RECORDS)
    _query_until(prometheus, f'knnstream_records_consumed_total{{topic="{topic}"}}', RECORDS + len(BAD_VALUES))
    _query_until(prometheus, f'sum(knnstream_records_dead_lettered_total{{topic="{topic}"}})', len(BAD_VALUES))
    _query_until(prometheus, 'up{job="knnstream"}', 1.0)


def test_prometheus_loads_and_evaluates_the_alert_rules(prometheus: str) -> None:
    rule_file = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expected = {rule.get("alert") or rule["record"] for group in rule_file["groups"] for rule in group["rules"]}
    deadline = time.monotonic() + 30
    while True:
        groups = _api(prometheus, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = [rule for rule in rules if rule.get("lastEvaluation", "").startswith("20")]
        if len(evaluated) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert {rule["name"] for rule in rules} == expected
    assert all(rule["health"] == "ok" for rule in evaluated), [r for r in evaluated if r["health"] != "ok"]
    assert len(evaluated) == len(expected)
    # With the worker up, the down/absent alerts (pending before the first scrape) clear.
    _query_until(prometheus, 'up{job="knnstream"}', 1.0)
    down = {"KnnstreamWorkerDown", "KnnstreamWorkerAbsent"}
    active = down
    while active and time.monotonic() < deadline + 15:
        active = {alert["labels"]["alertname"] for alert in _api(prometheus, "alerts")["alerts"]} & down
        time.sleep(0.25)
    assert not active, f"{active} still pending or firing while the worker is up"
