"""Kubernetes manifests validate against the Kubernetes schemas; KServe is checked by structure.

kubernetes-validate ships the upstream JSON schemas (no network); it has no CRD schemas, so the
InferenceService, ServiceMonitor and Kustomization are checked field by field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # no py.typed; see pyproject overrides
import pytest
import yaml

from shipyard.app.serve_settings import ServeSettings
from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.packaging.manifests import (
    IN_FLIGHT_METRIC,
    ServeManifestOptions,
    inference_service,
    kubernetes_manifests,
    write_manifests,
)

KUBERNETES_VERSIONS = ("1.30", "1.32")
CRD_FILES = {"kustomization.yaml", "servicemonitor.yaml"}


def _options(**changes: Any) -> ServeManifestOptions:
    values: dict[str, Any] = {
        "ref": "fraud@production",
        "image": "registry.example/shipyard:0.1.0",
        "namespace": "ml",
        "replicas": 3,
        "cpu": "500m",
        "memory": "2Gi",
        "secret_name": "fraud-db",
        "service_monitor": True,
        "hpa_inflight": 8,
    }
    values.update(changes)
    return ServeManifestOptions(**values)


def _validate(manifest: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:  # the message is the whole schema
        pytest.fail(f"{manifest['kind']} invalid for {version}: {str(exc).splitlines()[0]}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "changes",
    [{}, {"service_monitor": False, "hpa_inflight": None, "namespace": None, "name": "f-2"}],
)
def test_every_manifest_validates(version: str, changes: dict[str, Any], tmp_path: Path) -> None:
    files = kubernetes_manifests(_options(**changes))
    write_manifests(files, tmp_path)
    for name, manifest in files.items():
        assert yaml.safe_load((tmp_path / name).read_text()) == manifest
        if name not in CRD_FILES:
            _validate(manifest, version)
    kustomization = files["kustomization.yaml"]
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(files) - {"kustomization.yaml"})


def test_deployment_runs_safely_and_drains() -> None:
    files = kubernetes_manifests(_options())
    spec = files["deployment.yaml"]["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:5] == ["serve", "fraud@production", "--host", "0.0.0.0", "--auth"]
    assert container["image"] == "registry.example/shipyard:0.1.0" and spec["replicas"] == 3
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["SHIPYARD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "fraud-db"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", env["SHIPYARD_HOME"]["value"]} <= mounts
    prestop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    configmap = files["configmap.yaml"]["data"]
    drain = (
        prestop
        + float(configmap["SHIPYARD_SERVE_SHUTDOWN_DELAY_S"])
        + float(configmap["SHIPYARD_SERVE_DRAIN_TIMEOUT_S"])
    )
    assert pod["terminationGracePeriodSeconds"] > drain
    # HOME is an emptyDir: every replica logs its predictions to the registry's shared table.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_SERVE_LOG_SINKS", configmap["SHIPYARD_SERVE_LOG_SINKS"])
        assert ServeSettings().log_sinks == ("table",)


def test_service_hpa_pdb_and_network_policy() -> None:
    files = kubernetes_manifests(_options())
    ports = {p["name"]: p["port"] for p in files["service.yaml"]["spec"]["ports"]}
    assert ports == {"http": 8080, "grpc": 8081}
    hpa = files["hpa.yaml"]["spec"]
    assert hpa["minReplicas"] == 3 and hpa["scaleTargetRef"]["kind"] == "Deployment"
    kinds = {m["type"] for m in hpa["metrics"]}
    assert kinds == {"Resource", "Pods"}
    pods_metric = next(m for m in hpa["metrics"] if m["type"] == "Pods")
    assert pods_metric["pods"]["metric"]["name"] == IN_FLIGHT_METRIC
    assert files["pdb.yaml"]["spec"]["minAvailable"] == 1
    policy = files["networkpolicy.yaml"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == [8080, 8081]
    monitor = files["servicemonitor.yaml"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "hpa.yaml" in kubernetes_manifests(_options(hpa_inflight=None))
    plain = kubernetes_manifests(_options(hpa_inflight=None, service_monitor=False))
    assert "servicemonitor.yaml" not in plain
    assert [m["type"] for m in plain["hpa.yaml"]["spec"]["metrics"]] == ["Resource"]


def test_inference_service_structure() -> None:
    manifest = inference_service(_options(canary_percent=10))
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"] == {
        "name": "fraud",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/name": "fraud", "app.kubernetes.io/part-of": "shipyard"},
    }
    assert set(manifest["spec"]) == {"predictor"}
    predictor = manifest["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 10)
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "registry.example/shipyard:0.1.0"
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert "lifecycle" not in container and "startupProbe" not in container  # Knative rejects
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The predictor's container is a core/v1 Container: check it against the Pod schema.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [container], "volumes": predictor["volumes"]},
    }
    for version in KUBERNETES_VERSIONS:
        _validate(pod, version)
    assert "canaryTrafficPercent" not in inference_service(_options())["spec"]["predictor"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Bad_Name"}, "DNS label"),
        ({"namespace": "a/b"}, "DNS label"),
        ({"cpu": "lots"}, "quantity"),
        ({"replicas": 20, "max_replicas": 10}, "--replicas"),
        ({"canary_percent": 101}, "canary"),
        ({"ref": "../etc"}, "model name"),
        ({"image": "two words"}, "image"),
    ],
)
def test_bad_options_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        kubernetes_manifests(_options(**changes))


def test_existing_files_need_overwrite(tmp_path: Path) -> None:
    files = kubernetes_manifests(_options())
    write_manifests(files, tmp_path)
    with pytest.raises(Conflict, match="deployment.yaml"):
        write_manifests(files, tmp_path)
    write_manifests(files, tmp_path, overwrite=True)
