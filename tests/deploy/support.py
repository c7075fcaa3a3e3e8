"""Shared by the deployment tests: paths, required binaries, PromQL metric names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.serve.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL_PROMETHEUS = "bash deploy/install-prometheus.sh"

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_KEYWORDS |= {"inf", "nan"}


def require_binary(name: str) -> str:
    """The path of a Prometheus binary; a missing one fails the test (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run `{INSTALL_PROMETHEUS}` (CI runs it before the tests)")
    return path


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open() as handle:
        return [document for document in yaml.safe_load_all(handle) if document is not None]


def exported_metric_names(registry: CollectorRegistry | None = None) -> set[str]:
    """Every sample name the registry can expose, labelled families with no child yet included."""
    registry = registry if registry is not None else WorkerMetrics().registry
    return {family.name + suffix for family in registry.collect() for suffix in _SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # a number's exponent or a duration's unit: 1e3, 5m
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """A Grafana panel query as plain PromQL: interval variables → 5m, other variables → .*"""
    expr = re.sub(r"\$__(?:rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?", ".*", expr)
