"""deploy/: the compose file and the GitHub workflow against their published JSON Schemas (vendored by
check-jsonschema), the Kubernetes manifests parsed and checked for what makes them work together
(selectors, ports, probes, volumes, the HPA and KEDA targets, the queue's Redis list), and every command
they run parsed by the real CLI."""

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml
from redis import Redis
from rq import Queue

from magenta_api import jobs
from magenta_api.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def vendored_schema(name: str) -> dict:
    return json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / f"{name}.json").read_text())


def validate(doc, schema):
    jsonschema.validators.validator_for(schema)(schema).validate(doc)


def manifests() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> dict:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def cli_parses(argv: list):
    args = build_parser().parse_args(argv)
    assert callable(args.func)
    return args


def test_compose_file_is_valid_and_has_the_shared_parts():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    validate(compose, vendored_schema("compose-spec"))
    services = compose["services"]
    assert {"redis", "api-a", "api-b", "worker"} <= set(services)
    for name in ("api-a", "api-b", "worker"):
        svc = services[name]
        assert "models:/data/models" in svc["volumes"]
        assert svc["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert svc["environment"]["CACHE_URL"].startswith("redis://redis:")
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["magenta-api", "worker"]
    assert {services["api-a"]["ports"][0], services["api-b"]["ports"][0]} == {"5000:5000", "5001:5000"}
    cli_parses(services["api-a"]["command"][-1].split()[2:])  # exec magenta-api serve ...
    assert "models" in compose["volumes"]


def test_github_workflow_is_valid_and_keeps_a_commented_deploy_job():
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    workflow = yaml.safe_load(text)
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true; GitHub reads it as "on"
    validate(workflow, vendored_schema("github-workflows"))
    steps = "\n".join(s.get("run", "") for s in workflow["jobs"]["image"]["steps"])
    assert "docker compose -f deploy/docker-compose.yml up --build" in steps and "/v1/jobs" in steps
    assert "# deploy:" in text and "kubectl apply -k" in text and "rollout status" in text


def test_every_manifest_has_its_identity():
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ScaledObject",
    }
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


def test_deployments_services_and_probes_fit_together():
    deployments, services = by_kind("Deployment"), by_kind("Service")
    claims, maps = by_kind("PersistentVolumeClaim"), by_kind("ConfigMap")
    for dep in deployments.values():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"]
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes
            for ref in container.get("envFrom", []):
                assert ref["configMapRef"]["name"] in maps
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    for svc in services.values():
        [target] = [
            d
            for d in deployments.values()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        ports = {p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports

    api = deployments["magenta-api"]["spec"]["template"]["spec"]
    [container] = api["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert cli_parses(container["command"][1:]).command == "serve"
    [prefetch] = api["initContainers"]
    assert "magenta-api fetch --quiet $PREFETCH_MODELS" in prefetch["command"][-1]
    cli_parses(["fetch", "--quiet", "embedded-mel_2bar"])
    [worker] = deployments["magenta-api-worker"]["spec"]["template"]["spec"]["containers"]
    assert cli_parses(worker["command"][1:]).command == "worker"
    mounts = {m["mountPath"] for m in container["volumeMounts"]} & {m["mountPath"] for m in worker["volumeMounts"]}
    assert "/data/models" in mounts  # one model volume for both


def test_autoscaling_targets():
    [hpa] = by_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "magenta-api"}
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    [scaled] = by_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind("Deployment")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    # the list the workers read: RQ's key for the service's queue
    assert trigger["metadata"]["listName"] == Queue(jobs.QUEUE_NAME, connection=Redis()).key


def test_the_config_map_sets_only_variables_the_service_reads():
    [config] = by_kind("ConfigMap").values()
    source = (ROOT / "core" / "magenta_api" / "config.py").read_text()
    for name in config["data"]:
        if name != "PREFETCH_MODELS":  # read by the init container's shell
            assert f'"{name}"' in source, name
    assert config["data"]["REDIS_URL"].startswith("redis://redis:")


@pytest.mark.parametrize("doc", ["docs/deploy.md"])
def test_the_deploy_guide_names_the_files_it_walks_through(doc):
    text = (ROOT / doc).read_text()
    for needle in ("docker compose", "deploy/docker-compose.yml", "kubectl apply -k deploy/k8s", "magenta-api keys"):
        assert needle in text
