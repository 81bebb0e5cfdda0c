"""The Kubernetes manifests (deploy/k8s): the production overlay renders, every resource validates
against the Kubernetes API schemas, and what operators rely on is there (probes on /readyz and /healthz,
resources, the CPU autoscaler, disruption budgets, the migration Job, no secret in the repository, a
grace period that covers the drain)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bff.platform.settings import Settings

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for what these manifests use: maps merge, lists of named
    maps (containers, ports, volumes) merge by name, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        by_name = {x["name"]: x for x in base}
        out = [_merge(by_name[x["name"]], x) if x["name"] in by_name else x for x in patch]
        return out + [x for x in base if x["name"] not in {p["name"] for p in patch}]
    return copy.deepcopy(patch)


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    return list(pod.get("containers", []))


def render(directory: Path) -> list[dict[str, Any]]:
    """kustomize build for the subset these manifests use (resources, namespace, labels, images,
    replicas, patches); checked against `kubectl kustomize` where kubectl exists."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += render(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text(encoding="utf-8"))
        for i, resource in enumerate(resources):
            if (resource["kind"], resource["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"]):
                resources[i] = _merge(resource, patch)
    for resource in resources:
        if "namespace" in kustomization:
            resource["metadata"]["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
        for image in kustomization.get("images", []):
            for container in _containers(resource):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for replicas in kustomization.get("replicas", []):
            if resource["metadata"]["name"] == replicas["name"] and resource["kind"] == "Deployment":
                resource["spec"]["replicas"] = replicas["count"]
    return resources


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "production")


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def test_every_resource_validates_against_the_kubernetes_schemas(production) -> None:
    assert {r["kind"] for r in production} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    }
    for resource in production:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert resource["metadata"]["namespace"] == "sanxiang"
    # The validator is not a rubber stamp: a misspelt field fails.
    broken = copy.deepcopy(by_kind(production, "Deployment")["sanxiang-api"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl not installed: the overlay is rendered by the test's own kustomize subset only",
)
def test_the_renderer_agrees_with_kubectl_kustomize(production) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / "production")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = [doc for doc in yaml.safe_load_all(out) if doc]
    key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, theirs)) == sorted(map(key, production))
    mine = {key(r): r for r in production}
    for resource in theirs:
        assert resource == mine[key(resource)], key(resource)


def test_the_api_and_the_worker_are_deployed_as_operators_expect(production) -> None:
    deployments = by_kind(production, "Deployment")
    api, worker = deployments["sanxiang-api"], deployments["sanxiang-worker"]
    assert api["spec"]["replicas"] == 6  # the production overlay
    container = _containers(api)[0]
    assert container["args"] == ["serve"] and container["image"].endswith(":1.0.0")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] == "1"  # patched by the overlay
    assert _containers(worker)[0]["args"] == ["worker"] and worker["spec"]["replicas"] >= 2
    for deployment in deployments.values():
        for c in _containers(deployment):
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert {e.get("configMapRef", {}).get("name") for e in c["envFrom"]} >= {"sanxiang-config"}
            assert {e.get("secretRef", {}).get("name") for e in c["envFrom"]} >= {"sanxiang-secrets"}
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # The drain fits the grace period: the load balancer's grace (preStop) plus uvicorn's own 10 s.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= sleep + 10 + 5
    hpa = by_kind(production, "HorizontalPodAutoscaler")["sanxiang-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "sanxiang-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name, pdb in by_kind(production, "PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = by_kind(production, "Service")["sanxiang-api"]
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    job = by_kind(production, "Job")["sanxiang-migrate"]
    assert _containers(job)[0]["args"] == ["migrate"]


def test_no_secret_is_committed_and_the_config_names_real_settings(production) -> None:
    assert not [r for r in production if r["kind"] == "Secret"]
    config = by_kind(production, "ConfigMap")["sanxiang-config"]["data"]
    assert set(config) <= {name.upper() for name in Settings.__struct_fields__}
    secret_like = {
        "AUTH_SIGNING_KEYS",
        "PII_KEYS",
        "PII_INDEX_KEY",
        "WECHAT_SECRET",
        "IDP_CLIENT_SECRET",
        "CASE_WEBHOOK_SECRET",
        "AUDIT_ANCHOR_KEY",
        "DATABASE_URL",
        "REDIS_URL",
    }
    assert not secret_like & set(config)
    assert config["ENV"] == "prod" and config["DB_POOL_MAX"] == "8"
