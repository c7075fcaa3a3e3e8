"""deploy/prometheus: the alert rules check, their unit tests pass, and those tests can fail."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.serve.metrics import LATENCY_BUCKETS, LATENCY_SLO_S
from tests.deploy.support import DEPLOY, exported_metric_names, load_yaml, metric_names, require_binary

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "alerts_test.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"

# What the operations runbook promises: one alert (at least) for each.
REQUIRED_ALERTS = {
    "KnnstreamConsumerLagGrowing",
    "KnnstreamNoPredictions",
    "KnnstreamDeadLetterRateHigh",
    "KnnstreamBatchFailures",
    "KnnstreamBatchLatencySLOFastBurn",
    "KnnstreamBatchLatencySLOSlowBurn",
    "KnnstreamWorkerDown",
}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, check=False)


def test_promtool_check_rules_and_config() -> None:
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0 and "SUCCESS" in rules.stdout, rules.stdout + rules.stderr
    config = _promtool("check", "config", str(CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_required_alerts_exist_with_severity_and_text() -> None:
    alerts = _alerts()
    assert alerts.keys() >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fires, quiet = set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == set(_alerts()), "every alert has a case where it fires"
    assert quiet == set(_alerts()), "every alert has a case where it must stay quiet"


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_unit_tests_fail_when_a_firing_expectation_is_dropped(alert: str, tmp_path: Path) -> None:
    """The firing cases are not vacuous: expecting silence instead makes promtool fail."""
    tests = load_yaml(RULE_TESTS)
    tests["rule_files"] = [str(RULES)]
    changed = 0
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["alertname"] == alert and check.get("exp_alerts"):
                check["exp_alerts"] = []
                changed += 1
    assert changed
    mutated = tmp_path / "mutated_test.yml"
    mutated.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(mutated))
    assert result.returncode != 0 and alert in result.stdout + result.stderr


def test_rules_only_read_metrics_the_worker_exports() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    known = exported_metric_names() | recorded | {"up"}
    for rule in _rules():
        assert metric_names(rule["expr"]) <= known, (rule.get("alert") or rule.get("record"), rule["expr"])


def test_slo_rules_read_the_histogram_bucket_at_the_objective() -> None:
    slo_rules = [rule for rule in _rules() if "knnstream_batch_latency_seconds_bucket" in rule["expr"]]
    assert slo_rules
    assert LATENCY_SLO_S in LATENCY_BUCKETS
    for rule in slo_rules:
        assert f'le="{LATENCY_SLO_S}"' in rule["expr"], rule["record"]
