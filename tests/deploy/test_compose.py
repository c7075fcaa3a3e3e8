"""deploy/compose: the services fit together, and `docker compose config` accepts the file."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from stream.cli.flags import env_name
from stream.predict.cluster import threads_per_worker
from stream.settings import ProduceSettings, ServeSettings, TrainSettings
from tests.deploy.support import DEPLOY, load_yaml

COMPOSE = DEPLOY / "compose" / "compose.yaml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
INSTALL_COMPOSE = "bash deploy/compose/install-compose-plugin.sh"


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume; a source may be a ${VAR:-default}."""
    pattern = re.compile(r"(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::(?:ro|rw))?")
    volumes = []
    for spec in service.get("volumes", []):
        match = pattern.fullmatch(spec)
        assert match, spec
        volumes.append((match["source"], match["target"]))
    return volumes


def _gpu_reservation(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = service["deploy"]["resources"]["reservations"]["devices"]
    return devices


def _assert_settings_fields(environment: dict[str, str], settings_class: type[BaseSettings], service: str) -> None:
    knnstream = {key for key in environment if key.startswith("KNNSTREAM_")}
    fields = {env_name(name, field) for name, field in settings_class.model_fields.items()}
    assert knnstream, service
    assert knnstream <= fields, f"{service}: {sorted(knnstream - fields)} are no {settings_class.__name__} fields"


def test_services_of_the_stack() -> None:
    services = _services()
    assert {"kafka", "dask-scheduler", "dask-cuda-worker", "worker", "train", "prometheus", "grafana"} <= set(services)
    assert not any("zookeeper" in str(service.get("image", "")) for service in services.values())


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = _services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    environment = _environment(kafka)
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(environment["KAFKA_NODE_ID"] + "@kafka:")
    assert "CONTROLLER" in environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "healthcheck" in kafka


def test_dask_cuda_workers_reserve_gpus_and_share_the_store() -> None:
    services = _services()
    worker = services["dask-cuda-worker"]
    assert worker["command"][:3] == ["dask", "cuda", "worker"]
    assert worker["command"][3] == "tcp://dask-scheduler:8786"
    nthreads = int(worker["command"][worker["command"].index("--nthreads") + 1])
    assert nthreads >= threads_per_worker(ServeSettings.model_fields["max_batches_in_flight"].default)
    for name in ("dask-cuda-worker", "train", "worker"):
        (device,) = _gpu_reservation(services[name])
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
    for name in ("dask-cuda-worker", "train", "worker"):
        assert ("models", "/models") in _volumes(services[name]), name
    data = {source for source, target in _volumes(services["train"]) if target == "/data"}
    assert data and data == {source for source, target in _volumes(worker) if target == "/data"}, (
        "training reads its data on the Dask workers: the same directory is mounted there"
    )


def test_training_runs_once_before_the_worker_and_publishes_what_it_serves() -> None:
    services = _services()
    train, worker = services["train"], services["worker"]
    assert train["restart"] == "no"
    assert worker["depends_on"]["train"]["condition"] == "service_completed_successfully"
    train_env, worker_env = _environment(train), _environment(worker)
    assert worker_env["KNNSTREAM_MODEL"] == f"{train_env['KNNSTREAM_NAME']}@{train_env['KNNSTREAM_ALIAS']}"
    assert train_env["KNNSTREAM_STORE"] == worker_env["KNNSTREAM_STORE"]
    assert train_env["KNNSTREAM_SCHEDULER"] == worker_env["KNNSTREAM_SCHEDULER"] == "tcp://dask-scheduler:8786"


def test_environment_keys_are_settings_fields() -> None:
    services = _services()
    _assert_settings_fields(_environment(services["worker"]), ServeSettings, "worker")
    _assert_settings_fields(_environment(services["train"]), TrainSettings, "train")
    _assert_settings_fields(_environment(services["producer"]), ProduceSettings, "producer")


def test_worker_health_metrics_port_and_prometheus_target_agree() -> None:
    worker = _services()["worker"]
    port = _environment(worker)["KNNSTREAM_METRICS_PORT"]
    assert _environment(worker)["KNNSTREAM_METRICS_HOST"] == "0.0.0.0"
    assert f"localhost:{port}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert f"{port}:{port}" in worker["ports"]
    (job,) = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    assert job["job_name"] == "knnstream", "the alert rules select job=knnstream"
    assert job["static_configs"][0]["targets"] == [f"worker:{port}"]


def test_bind_mounts_exist() -> None:
    for name, service in _services().items():
        for source, _ in _volumes(service):
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
    build = _services()["worker"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()


@cache
def _docker_compose() -> list[str] | None:
    try:
        found = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
    except FileNotFoundError:
        return None
    return ["docker", "compose"] if found.returncode == 0 else None


def _compose_config(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = _docker_compose()
    if command is None:
        pytest.skip(f"the docker compose plugin is not installed (run `{INSTALL_COMPOSE}` to build it from Go)")
    return subprocess.run(
        [*command, "-f", str(path), "config", *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_docker_compose_config_accepts_the_file() -> None:
    result = _compose_config(COMPOSE, "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == set(_services()) - {"producer"}, "only the load profile is left out"
    devices = resolved["services"]["dask-cuda-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_docker_compose_config_rejects_a_misspelled_key(tmp_path: Path) -> None:
    """The validation is real: the same file with a misspelled service key fails."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:", "    healthchek:", 1))
    result = _compose_config(broken, "--quiet")
    assert result.returncode != 0 and "healthchek" in result.stderr
