"""deploy/grafana: the dashboard queries only metrics the worker exports, and is provisioned."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import (
    DEPLOY,
    exported_metric_names,
    grafana_to_promql,
    load_yaml,
    metric_names,
    require_binary,
)

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "knnstream.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "knnstream.yaml"
COMPOSE = DEPLOY / "compose" / "compose.yaml"

# What the dashboard must show, by the metric that shows it.
REQUIRED_METRICS = {
    "knnstream_records_consumed_total": "throughput in",
    "knnstream_records_predicted_total": "throughput out",
    "knnstream_consumer_lag_records": "lag per partition",
    "knnstream_batch_latency_seconds_bucket": "latency percentiles",
    "knnstream_predict_duration_seconds_bucket": "predict latency percentiles",
    "knnstream_records_dead_lettered_total": "dead-letter rate",
    "knnstream_model_info": "model version in use",
    "knnstream_gpu_memory_used_bytes": "GPU memory",
    "knnstream_inflight_batches": "in-flight batches",
    "knnstream_records_decoded_on_driver_total": "records the Dask workers did not parse",
    "knnstream_gc_seconds_total": "the driver's time in garbage collection",
}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every templating query."""
    queries = [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert match, f"variable {variable['name']}: only label_values(SELECTOR, LABEL) is used"
            queries.append((f"${variable['name']}", match.group(1)))
    return queries


def test_every_query_names_only_exported_metrics() -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for where, expr in _queries(_dashboard()):
        names = metric_names(grafana_to_promql(expr))
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported by the worker"
        used |= names
    missing = {metric: purpose for metric, purpose in REQUIRED_METRICS.items() if metric not in used}
    assert not missing, f"the dashboard does not show {missing}"


def test_the_metric_check_catches_an_unknown_metric() -> None:
    dashboard = _dashboard()
    dashboard["panels"][1]["targets"][0]["expr"] = "rate(knnstream_records_consumed[5m])"  # no _total
    exported = exported_metric_names()
    unknown = [expr for _, expr in _queries(dashboard) if not metric_names(grafana_to_promql(expr)) <= exported]
    assert unknown == ["rate(knnstream_records_consumed[5m])"]


def test_latency_percentiles_come_from_the_histograms() -> None:
    exprs = [expr for _, expr in _queries(_dashboard())]
    for histogram in ("knnstream_batch_latency_seconds_bucket", "knnstream_predict_duration_seconds_bucket"):
        quantiles = {
            float(match.group(1))
            for expr in exprs
            if histogram in expr
            for match in [re.match(r"histogram_quantile\(([0-9.]+),", expr)]
            if match
        }
        assert {0.5, 0.95, 0.99} <= quantiles, histogram


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (as recording rules) after the Grafana variables are filled in."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{number}", "expr": grafana_to_promql(expr)}
                    for number, (_, expr) in enumerate(_queries(_dashboard()))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_are_laid_out_and_use_the_provisioned_datasource() -> None:
    dashboard = _dashboard()
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    datasource = load_yaml(DATASOURCES)["datasources"][0]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == datasource["type"] == "prometheus"
    assert variable["current"]["value"] == datasource["uid"]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert dashboard["uid"] and dashboard["title"]


def test_provisioning_matches_the_compose_mounts() -> None:
    datasource = load_yaml(DATASOURCES)
    assert datasource["apiVersion"] == 1
    (source,) = datasource["datasources"]
    assert source["access"] == "proxy" and source["isDefault"] is True
    compose = load_yaml(COMPOSE)
    assert re.fullmatch(r"http://prometheus:9090/?", source["url"]) and "prometheus" in compose["services"]

    providers = load_yaml(PROVIDERS)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    mounts = dict(_bind_mounts(compose["services"]["grafana"]))
    assert mounts.get("../grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_mount = mounts.get("../grafana/dashboards")
    assert dashboards_mount == provider["options"]["path"], "the provider reads where the dashboards are mounted"


def _bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            yield source, target
