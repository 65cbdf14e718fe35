"""deploy/kubernetes, offline: every manifest against Kubernetes' own schemas (kubernetes-validate, strict),
the ScaledObjects against KEDA's CRD schema (vendored), and what the files must say to each other: probes on
routes the API has, a grace period longer than the drain, the staging init container, Redis private and
never evicting, credentials from the Secret, and only variables shared/settings.py reads. No cluster runs."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from flask import Flask

from api import health
from api.cli import _parser as cli_parser
from shared.settings import PROJECT_ROOT, Settings, check_exposure, settings_from_env

KUBE = PROJECT_ROOT / "deploy" / "kubernetes"
KEDA_SCHEMA = PROJECT_ROOT / "tests" / "deploy" / "keda-scaledobject.schema.json"
# The oldest Kubernetes the manifests target, and the newest kubernetes-validate knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Read by something other than shared/settings.py: the Redis password (spliced into REDIS_URL by
# Kubernetes and read by redis-server) and huggingface_hub's token for gated models.
NOT_SETTINGS = {"REDIS_PASSWORD", "HF_TOKEN"}
SERVICE_OF = {"api": "api", "flower": "flower", "exporter": "metrics"}  # component -> check_exposure's name


def load(folder: Path = KUBE) -> list[dict[str, Any]]:
    return [doc for f in sorted(folder.rglob("*.yaml")) for doc in yaml.safe_load_all(f.read_text()) if doc]


def find(kind: str, name: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs or load() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def ours(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, container) for every container running the TorchWeave image, init containers too."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pod = doc["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                if c["image"].startswith("torchweave:"):
                    yield doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"], c


def environment(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the container starts with: its ConfigMaps, then its env (a secret as a stand-in)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(find("ConfigMap", source["configMapRef"]["name"], docs)["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "secret-from-the-secret")
    return env


def keda_schema() -> dict[str, Any]:
    """KEDA's schema, strict the way the API server's field validation is: an unknown field is an error."""
    schema: dict[str, Any] = json.loads(KEDA_SCHEMA.read_text())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and node is not schema:
                node["additionalProperties"] = False
            for child in node.values():
                close(child)
        elif isinstance(node, list):
            for child in node:
                close(child)

    close(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    docs = [d for d in load() if d["kind"] != "ScaledObject"]
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_scaled_objects_follow_kedas_schema_and_scale_workers_on_waiting_requests() -> None:
    docs, schema = load(), keda_schema()
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        "torchweave-worker",
        "torchweave-worker-gpu",
    }
    model = find("ConfigMap", "torchweave-config", docs)["data"]["MODEL"]
    prometheus = find("Service", "torchweave-prometheus", docs)["spec"]["ports"][0]["port"]
    for so in scaled:
        jsonschema.validate(so, schema)
        target = find("Deployment", so["spec"]["scaleTargetRef"]["name"], docs)
        assert "replicas" not in target["spec"], "KEDA owns the count; a replicas field fights it on apply"
        [trigger] = so["spec"]["triggers"]
        meta = trigger["metadata"]
        # The metadata KEDA's prometheus scaler requires (pkg/scalers/prometheus_scaler.go).
        assert trigger["type"] == "prometheus" and float(meta["threshold"]) > 0
        assert meta["query"] == f'sum(vllm:num_requests_waiting{{model_name="{model}"}})'
        assert meta["serverAddress"] == f"http://torchweave-prometheus:{prometheus}"
    scrape = yaml.safe_load(find("ConfigMap", "torchweave-prometheus", docs)["data"]["prometheus.yml"])
    exporter = find("Service", "torchweave-exporter", docs)["spec"]["ports"][0]["port"]
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"torchweave-exporter:{exporter}"]


def test_a_broken_manifest_fails_both_validators() -> None:
    api = copy.deepcopy(find("Deployment", "torchweave-api"))
    api["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, VERSIONS[0], strict=True)
    probe = copy.deepcopy(find("Deployment", "torchweave-api"))
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(probe, VERSIONS[0], strict=True)
    so = copy.deepcopy(find("ScaledObject", "torchweave-worker"))
    so["spec"]["minReplicas"] = so["spec"].pop("minReplicaCount")  # HPA's word, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, keda_schema())


def test_the_api_is_probed_on_routes_it_has() -> None:
    app = Flask("probe")
    app.register_blueprint(health.bp)
    rules = {r.rule for r in app.url_map.iter_rules()}
    [api] = find("Deployment", "torchweave-api")["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready" in rules
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live" in rules
    assert api["readinessProbe"]["httpGet"]["port"] == api["ports"][0]["name"]


def test_workers_get_longer_to_stop_than_they_drain_and_stage_their_model_first() -> None:
    docs = load()
    claim = find("PersistentVolumeClaim", "torchweave-models", docs)["metadata"]["name"]
    for name in ("torchweave-worker", "torchweave-worker-gpu"):
        pod = find("Deployment", name, docs)["spec"]["template"]["spec"]
        [init], [worker] = pod["initContainers"], pod["containers"]
        env, init_env = environment(worker, docs), environment(init, docs)
        assert pod["terminationGracePeriodSeconds"] >= float(env["DRAIN_TIMEOUT"]) + 10, name
        # Staged in the dtype served, on the volume served from, by a command the CLI takes.
        assert init["command"][:2] == ["torchweave", "stage"] and init_env["DTYPE"] == env["DTYPE"]
        assert cli_parser().parse_args(init["command"][1:]).model == "$(MODEL)"
        mounts = [{m["mountPath"]: m["name"] for m in c["volumeMounts"]} for c in (init, worker)]
        assert mounts[0][env["CACHE_DIR"]] == mounts[1][env["CACHE_DIR"]] == "models", name
        [models] = [v for v in pod["volumes"] if v["name"] == "models"]
        assert models["persistentVolumeClaim"]["claimName"] == claim
    [gpu] = find("Deployment", "torchweave-worker-gpu", docs)["spec"]["template"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and environment(gpu, docs)["DEVICE"] == "cuda"


def test_redis_is_private_persistent_and_never_evicts() -> None:
    docs = load()
    [redis] = find("StatefulSet", "torchweave-redis", docs)["spec"]["template"]["spec"]["containers"]
    args = " ".join(redis["args"])
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args
    assert "--requirepass $(REDIS_PASSWORD)" in args
    assert all(d["spec"].get("type", "ClusterIP") == "ClusterIP" for d in docs if d["kind"] == "Service")


def test_every_container_starts_with_valid_settings_and_its_credentials_from_the_secret() -> None:
    docs = load()
    example = find("Secret", "torchweave-secrets", docs)["stringData"]
    assert all(re.search(r"change-me$", v) for v in example.values()), "the example holds a real secret"
    for component, container in ours(docs):
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["name"] == "torchweave-secrets" and ref["key"] in example, var
            if var["name"] in example:
                assert ref, f"{component} sets {var['name']} in the manifest"
        settings = settings_from_env(environment(container, docs))  # SettingsError naming a bad value
        if container["name"] != "stage" and component in SERVICE_OF:
            check_exposure(settings, SERVICE_OF[component])  # HOST=0.0.0.0 refuses without its credential


def unknown_variables(docs: list[dict[str, Any]]) -> set[str]:
    aliases = {field.validation_alias for field in Settings.model_fields.values()}
    names = {name for _, c in ours(docs) for name in environment(c, docs)}
    return names - aliases - NOT_SETTINGS


def test_the_manifests_set_only_variables_torchweave_reads() -> None:
    docs = load()
    assert unknown_variables(docs) == set()
    misspelled = copy.deepcopy(docs)
    find("ConfigMap", "torchweave-config", misspelled)["data"]["DRAIN_TIMOUT"] = "30"
    assert unknown_variables(misspelled) == {"DRAIN_TIMOUT"}
