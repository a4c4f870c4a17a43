"""Kubernetes and KServe manifests for serving a model with `shipyard serve`.

Plain dictionaries written as YAML; the tests validate them against the Kubernetes schemas
(kubernetes-validate). The pod drains before SIGTERM: a preStop sleep lets endpoints be removed,
then the server fails readiness, drains in-flight requests and exits, all inside
terminationGracePeriodSeconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.core.refs import ModelRef

Manifest = dict[str, Any]

HOME_DIR = "/var/lib/shipyard"
IN_FLIGHT_METRIC = "shipyard_requests_in_flight"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?")


@dataclass(frozen=True, slots=True)
class ServeManifestOptions:
    """What the generated Deployment / InferenceService runs and how it is sized."""

    ref: str
    image: str
    name: str | None = None
    namespace: str | None = None
    replicas: int = 2
    max_replicas: int = 10
    cpu: str = "1"
    memory: str = "1Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    secret_name: str = "shipyard"  # noqa: S105 - a Secret's name
    http_port: int = 8080
    grpc_port: int = 8081
    workers: int = 1
    target_cpu_percent: int = 70
    hpa_inflight: int | None = None
    service_monitor: bool = False
    prestop_seconds: int = 5
    shutdown_delay_s: float = 1.0
    drain_timeout_s: float = 20.0
    canary_percent: int | None = None

    @property
    def app_name(self) -> str:
        return self.name or dns_label(ModelRef.parse(self.ref).name)

    @property
    def grace_seconds(self) -> int:
        """Longer than preStop + not-ready delay + drain, with a margin for the exit."""
        return int(self.prestop_seconds + self.shutdown_delay_s + self.drain_timeout_s) + 5

    def check(self) -> ServeManifestOptions:
        ModelRef.parse(self.ref)
        for label, value in (("--name", self.app_name), ("--namespace", self.namespace)):
            if value is not None and not (_DNS_LABEL.fullmatch(value) and len(value) <= 63):
                raise InvalidArgument(f"{label} {value!r} must be a DNS label (a-z, 0-9, '-')")
        for flag, quantity in (("--cpu", self.cpu), ("--memory", self.memory)):
            if not _QUANTITY.fullmatch(quantity):
                raise InvalidArgument(f"{flag} {quantity!r} is not a Kubernetes quantity")
        if not 1 <= self.replicas <= self.max_replicas:
            raise InvalidArgument("--replicas must be at least 1 and at most --max-replicas")
        if self.canary_percent is not None and not 0 <= self.canary_percent <= 100:
            raise InvalidArgument("--canary-percent must be between 0 and 100")
        if not self.image or any(c.isspace() for c in self.image):
            raise InvalidArgument(f"--image {self.image!r} is not an image reference")
        return self


def dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "model"


def _metadata(o: ServeManifestOptions, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or o.app_name, "labels": _labels(o)}
    if o.namespace:
        meta["namespace"] = o.namespace
    return meta


def _labels(o: ServeManifestOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": o.app_name, "app.kubernetes.io/part-of": "shipyard"}


def serve_args(o: ServeManifestOptions) -> list[str]:
    return [
        "serve", o.ref, "--host", "0.0.0.0", "--auth",  # noqa: S104 - in-cluster, keys required
        "--http-port", str(o.http_port), "--grpc-port", str(o.grpc_port),
        "--workers", str(o.workers),
    ]  # fmt: skip


def _env(o: ServeManifestOptions) -> list[dict[str, Any]]:
    def secret(variable: str, key: str, optional: bool) -> dict[str, Any]:
        ref = {"name": o.secret_name, "key": key, "optional": optional}
        return {"name": variable, "valueFrom": {"secretKeyRef": ref}}

    return [
        {"name": "SHIPYARD_HOME", "value": HOME_DIR},
        {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - an emptyDir volume
        secret("SHIPYARD_DATABASE_URL", "database-url", False),
        secret("SHIPYARD_BLOB_URL", "blob-url", True),
    ]


def _probes(o: ServeManifestOptions) -> dict[str, Any]:
    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    return {
        "readinessProbe": probe("/v2/health/ready", 5, 2),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "startupProbe": probe("/v2/health/live", 2, 60),
    }


def _ports(o: ServeManifestOptions) -> list[dict[str, Any]]:
    return [
        {"name": "http", "containerPort": o.http_port, "protocol": "TCP"},
        {"name": "grpc", "containerPort": o.grpc_port, "protocol": "TCP"},
    ]


def _resources(o: ServeManifestOptions) -> dict[str, Any]:
    limits = {"memory": o.memory_limit or o.memory}
    if o.cpu_limit:
        limits["cpu"] = o.cpu_limit
    return {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": limits}


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(o: ServeManifestOptions) -> dict[str, Any]:
    return {
        "name": "shipyard",
        "image": o.image,
        "args": serve_args(o),
        "ports": _ports(o),
        "env": _env(o),
        "envFrom": [{"configMapRef": {"name": f"{o.app_name}-serve"}}],
        "resources": _resources(o),
        **_probes(o),
        "lifecycle": {"preStop": {"sleep": {"seconds": o.prestop_seconds}}},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "home", "mountPath": HOME_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }


def _pod_spec(o: ServeManifestOptions) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": o.grace_seconds,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(o)],
        "volumes": [
            {"name": "home", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        ],
    }


def deployment(o: ServeManifestOptions) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(o),
        "spec": {
            "replicas": o.replicas,
            "selector": {"matchLabels": _labels(o)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": _labels(o)}, "spec": _pod_spec(o)},
        },
    }


def service(o: ServeManifestOptions) -> Manifest:
    ports = [
        {"name": "http", "port": o.http_port, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": o.grpc_port, "targetPort": "grpc", "protocol": "TCP"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(o),
        "spec": {"type": "ClusterIP", "selector": _labels(o), "ports": ports},
    }


def hpa(o: ServeManifestOptions) -> Manifest:
    cpu = {"type": "Utilization", "averageUtilization": o.target_cpu_percent}
    metrics: list[dict[str, Any]] = [
        {"type": "Resource", "resource": {"name": "cpu", "target": cpu}}
    ]
    if o.hpa_inflight is not None:
        # Needs the Prometheus adapter (or another custom metrics API) exposing this metric.
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": IN_FLIGHT_METRIC},
                    "target": {"type": "AverageValue", "averageValue": str(o.hpa_inflight)},
                },
            }
        )
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": o.app_name}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(o),
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": o.replicas,
            "maxReplicas": o.max_replicas,
            "metrics": metrics,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def pdb(o: ServeManifestOptions) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(o),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels(o)}},
    }


def network_policy(o: ServeManifestOptions) -> Manifest:
    ports = [{"protocol": "TCP", "port": p} for p in (o.http_port, o.grpc_port)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(o),
        "spec": {
            "podSelector": {"matchLabels": _labels(o)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": ports}],
        },
    }


def config_map(o: ServeManifestOptions) -> Manifest:
    data = {
        "SHIPYARD_SERVE_SHUTDOWN_DELAY_S": str(o.shutdown_delay_s),
        "SHIPYARD_SERVE_DRAIN_TIMEOUT_S": str(o.drain_timeout_s),
        "SHIPYARD_SERVE_ACCESS_LOG": "true",
        "SHIPYARD_SERVE_LOG_LEVEL": "info",
        # HOME is an emptyDir: Parquet logs would die with the pod, unseen by the control
        # plane. The registry's table is shared by every replica and read by the monitoring.
        "SHIPYARD_SERVE_LOG_SINKS": '["table"]',
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(o, f"{o.app_name}-serve"),
        "data": data,
    }


def service_monitor(o: ServeManifestOptions) -> Manifest:
    """Prometheus Operator ServiceMonitor (a CRD): /metrics needs a `read` key with --auth."""
    endpoint = {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "authorization": {"credentials": {"name": o.secret_name, "key": "metrics-api-key"}},
    }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(o),
        "spec": {"selector": {"matchLabels": _labels(o)}, "endpoints": [endpoint]},
    }


def kubernetes_manifests(o: ServeManifestOptions) -> dict[str, Manifest]:
    """File name → manifest, kustomization.yaml included."""
    o.check()
    files = {
        "deployment.yaml": deployment(o),
        "service.yaml": service(o),
        "hpa.yaml": hpa(o),
        "pdb.yaml": pdb(o),
        "networkpolicy.yaml": network_policy(o),
        "configmap.yaml": config_map(o),
    }
    if o.service_monitor:
        files["servicemonitor.yaml"] = service_monitor(o)
    kustomization: Manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    if o.namespace:
        kustomization["namespace"] = o.namespace
    return {"kustomization.yaml": kustomization, **files}


def inference_service(o: ServeManifestOptions) -> Manifest:
    """A KServe InferenceService running the shipyard image as a custom predictor (OIP v2).

    Serverless mode (Knative), which `canaryTrafficPercent` needs: one exposed port, no
    lifecycle hooks or startup probe (the queue-proxy drains requests itself)."""
    o.check()
    predictor_container: dict[str, Any] = {
        "name": "kserve-container",
        "image": o.image,
        "args": serve_args(o),
        "ports": [{"name": "http1", "containerPort": o.http_port, "protocol": "TCP"}],
        "env": [
            *_env(o),
            *({"name": k, "value": v} for k, v in config_map(o)["data"].items()),
        ],
        "resources": _resources(o),
        "securityContext": _container_security(),
        "volumeMounts": container(o)["volumeMounts"],
    }
    for name in ("readinessProbe", "livenessProbe"):
        probe = _probes(o)[name]
        probe["httpGet"]["port"] = o.http_port  # Knative: the one container port, by number
        predictor_container[name] = probe
    predictor: dict[str, Any] = {
        "minReplicas": o.replicas,
        "maxReplicas": o.max_replicas,
        "containers": [predictor_container],
        "volumes": _pod_spec(o)["volumes"],
    }
    if o.canary_percent is not None:
        predictor["canaryTrafficPercent"] = o.canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(o),
        "spec": {"predictor": predictor},
    }


def write_manifests(files: dict[str, Manifest], out: Path, *, overwrite: bool = False) -> Path:
    """Write each manifest as YAML into directory `out` (existing files only with overwrite)."""
    out.mkdir(parents=True, exist_ok=True)
    clashes = sorted(name for name in files if (out / name).exists())
    if clashes and not overwrite:
        raise Conflict(f"{out} already has {', '.join(clashes)} (pass --overwrite to replace)")
    for name, manifest in files.items():
        text = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
        (out / name).write_text(text)
    return out
