"""deploy/k8s: schema-valid manifests (kubernetes-validate, bundled schemas) that fit together."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stream.predict.cluster import threads_per_worker
from stream.settings import ServeSettings, TrainSettings
from tests.deploy.support import DEPLOY, load_yaml, load_yaml_documents

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - the dev extra installs it
    kubernetes_validate = None

K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"


def _validator() -> Any:
    if kubernetes_validate is None:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]'")
    return kubernetes_validate


def _manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path != KUSTOMIZATION for doc in load_yaml_documents(path)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [m for m in _manifests() if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    return found


def _containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in _manifests():
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in {"Deployment", "Job"}:
            yield name, manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "DaskCluster":
            yield f"{name} worker", manifest["spec"]["worker"]["spec"]
            yield f"{name} scheduler", manifest["spec"]["scheduler"]["spec"]


def _strict(document: dict[str, Any]) -> None:
    validator = _validator()
    try:
        validator.validate(document, validator.latest_version(), strict=True)
    except validator.ValidationError as exc:
        raise AssertionError(f"{document['kind']}/{document['metadata']['name']}: {exc.message}") from exc


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(KUSTOMIZATION)
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert all(
        m["metadata"].get("namespace", kustomization["namespace"]) == kustomization["namespace"]
        for m in _manifests()
        if m["kind"] != "Namespace"
    )


def test_builtin_resources_pass_strict_schema_validation() -> None:
    builtin = [m for m in _manifests() if m["kind"] != "DaskCluster"]
    assert {m["kind"] for m in builtin} >= {"ConfigMap", "Secret", "Deployment", "Service", "Job"}
    for manifest in builtin:
        _strict(manifest)


def test_the_validator_rejects_a_misspelled_field() -> None:
    deployment = _one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(AssertionError, match="readinesProbe"):
        _strict(deployment)


def test_daskcluster_matches_the_operator_crd_with_gpu_workers() -> None:
    cluster = _one("DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    spec = cluster["spec"]
    assert set(spec) <= {"idleTimeout", "scheduler", "worker"}
    assert isinstance(spec["worker"]["replicas"], int) and spec["worker"]["replicas"] >= 1
    # The CRD embeds core PodSpec / ServiceSpec: validate them as a Pod and a Service.
    metadata = {"name": cluster["metadata"]["name"], "namespace": "knnstream"}
    for part in ("worker", "scheduler"):
        _strict({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec[part]["spec"]})
    _strict({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec["scheduler"]["service"]})
    (worker,) = spec["worker"]["spec"]["containers"]
    assert worker["args"][:3] == ["dask", "cuda", "worker"]
    nthreads = int(worker["args"][worker["args"].index("--nthreads") + 1])
    assert nthreads >= threads_per_worker(ServeSettings.model_fields["max_batches_in_flight"].default)
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    selector = spec["scheduler"]["service"]["selector"]
    assert selector == {"dask.org/cluster-name": cluster["metadata"]["name"], "dask.org/component": "scheduler"}


def test_worker_scheduler_address_is_the_operator_service() -> None:
    cluster = _one("DaskCluster")
    config = _one("ConfigMap", "knnstream-config")["data"]
    (comm,) = [p for p in cluster["spec"]["scheduler"]["service"]["ports"] if p["name"] == "tcp-comm"]
    name = cluster["metadata"]["name"]
    assert config["KNNSTREAM_SCHEDULER"] == f"tcp://{name}-scheduler.knnstream.svc:{comm['port']}"


def test_deployment_probes_healthz_and_takes_config_from_configmap_and_secret() -> None:
    deployment = _one("Deployment", "knnstream-worker")
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    config = _one("ConfigMap", "knnstream-config")
    secret = _one("Secret", "knnstream-kafka")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(config["data"]["KNNSTREAM_METRICS_PORT"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] > 60, (
        "liveness must tolerate /healthz's 60 s staleness window"
    )
    refs = {(next(iter(ref)), next(iter(ref.values()))["name"]) for ref in container["envFrom"]}
    assert refs == {("configMapRef", config["metadata"]["name"]), ("secretRef", secret["metadata"]["name"])}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    service = _one("Service", "knnstream-worker-metrics")
    assert service["spec"]["selector"] == selector


def test_configmap_and_secret_hold_only_settings_and_build_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _one("ConfigMap", "knnstream-config")["data"]
    secret = _one("Secret", "knnstream-kafka")["stringData"]
    fields = {"KNNSTREAM_" + name.upper() for name in ServeSettings.model_fields}
    assert set(config) <= fields and set(secret) <= fields
    assert "KNNSTREAM_SASL_PASSWORD" in secret and "KNNSTREAM_SASL_PASSWORD" not in config
    for key, value in {**config, **secret}.items():
        monkeypatch.setenv(key, value)
    settings = ServeSettings()
    assert settings.metrics_port == int(config["KNNSTREAM_METRICS_PORT"])
    assert settings.librdkafka_config()["security.protocol"] == config["KNNSTREAM_SECURITY_PROTOCOL"]


def test_training_job_publishes_the_model_the_worker_serves() -> None:
    job = _one("Job", "knnstream-train")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    environment = {item["name"]: item.get("value") for item in container["env"]}
    assert set(environment) <= {"KNNSTREAM_" + name.upper() for name in TrainSettings.model_fields}
    served = _one("ConfigMap", "knnstream-config")["data"]["KNNSTREAM_MODEL"]
    assert served == f"{environment['KNNSTREAM_NAME']}@{environment['KNNSTREAM_ALIAS']}"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_volumes_claim_existing_pvcs_and_containers_are_locked_down() -> None:
    claims = {m["metadata"]["name"] for m in _manifests() if m["kind"] == "PersistentVolumeClaim"}
    for name, pod_spec in _pod_specs():
        for volume in pod_spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        assert pod_spec["securityContext"]["runAsNonRoot"] is True, name
        for container in _containers(pod_spec):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["image"].split(":")[0] == "knnstream", name
