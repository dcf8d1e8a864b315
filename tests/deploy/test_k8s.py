"""deploy/k8s/*.yaml: valid Kubernetes objects (schemas of one pinned Kubernetes version, shipped by
the kubernetes-validate package: nothing is fetched), and what a platform team expects of them —
probes on the routes the processes serve, resources, disruption budgets, autoscaling, migrations
before the rollout, secrets from a Secret."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.keys import BOOKING_QUEUE_NAME
from shared.settings import Env, Settings, _fields
from surgegate.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests promise to work on; kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.31.0"
# Custom resources have no schema among Kubernetes' own: checked field by field below instead.
CRD_GROUPS = {"keda.sh/v1alpha1"}
SECRET = "surgegate-env"
REQUIRED_SECRETS = {
    "SURGEGATE_DATABASE_URL",
    "SURGEGATE_REDIS_URL",
    "SURGEGATE_SECRET_KEYS",
    "SURGEGATE_ADMIN_TOKEN",
    "SURGEGATE_PERSON_KEY",
    "SURGEGATE_AUDIT_SIGNING_KEY",
}


def load_objects() -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                objects.append((path.name, doc))
    return objects


OBJECTS = load_objects()
CORE = [(f, o) for f, o in OBJECTS if o["apiVersion"] not in CRD_GROUPS]


def one(kind: str, name: str) -> dict[str, Any]:
    [found] = [o for _, o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def env_names() -> set[str]:
    return {m.name for f in _fields().values() for m in f.metadata if isinstance(m, Env)}


@pytest.mark.parametrize(("path", "obj"), CORE, ids=[f"{f}:{o['kind']}/{o['metadata']['name']}" for f, o in CORE])
def test_valid_against_the_kubernetes_schema(path: str, obj: dict[str, Any]) -> None:
    # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` makes it.
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_bites() -> None:
    """Negative control: a misspelt probe field and a wrong type are refused."""
    broken = copy.deepcopy(one("Deployment", "surgegate-edge"))
    containers(broken)[0]["readinessProbe"]["httpGet"]["prot"] = 8080
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(one("PodDisruptionBudget", "surgegate-edge"))
    broken["spec"]["minAvailable"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_custom_resources_are_only_kedas() -> None:
    """Everything not validated by schema above is a KEDA object, which the tests below check."""
    crds = {(o["apiVersion"], o["kind"]) for _, o in OBJECTS if o["apiVersion"] in CRD_GROUPS}
    assert crds == {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(one("ScaledObject", "surgegate-worker"), KUBERNETES_VERSION, strict=True)


def test_probes_hit_the_routes_on_the_ports_the_processes_bind() -> None:
    defaults = Settings()
    ports = {"edge": defaults.edge_port, "api": defaults.api_port, "worker": defaults.worker_metrics_port}
    for role, port in ports.items():
        [c] = containers(one("Deployment", f"surgegate-{role}"))
        assert c["args"] == [role]
        [declared] = c["ports"]
        assert declared["containerPort"] == port
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": declared["name"]}
        if role != "worker":  # the worker takes jobs from Redis, no traffic: no readiness to report
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": declared["name"]}
    # and the processes serve them (the worker's /healthz: tests/booking_worker/test_supervisor.py)
    sources = {"edge": ROOT / "waitingroom" / "app.py", "api": ROOT / "admission" / "app.py"}
    for source in sources.values():
        text = source.read_text()
        assert '"/healthz", healthz' in text
        assert '"/readyz", readyz' in text


def test_every_container_has_requests_and_limits() -> None:
    for _, obj in OBJECTS:
        if obj["kind"] in {"Deployment", "Job"}:
            for c in containers(obj):
                for bound in ("requests", "limits"):
                    assert set(c["resources"][bound]) >= {"cpu", "memory"}, (obj["metadata"]["name"], bound)


def test_every_deployment_has_a_disruption_budget_and_an_autoscaler() -> None:
    budgets = [o for _, o in OBJECTS if o["kind"] == "PodDisruptionBudget"]
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for _, o in OBJECTS if o["kind"] == "HorizontalPodAutoscaler"}
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for _, o in OBJECTS if o["kind"] == "ScaledObject"}
    for _, dep in OBJECTS:
        if dep["kind"] != "Deployment":
            continue
        name, labels = dep["metadata"]["name"], dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, name
        assert covering[0]["spec"]["minAvailable"] == 1
        # one owner of the replica count: an autoscaler, never also a fixed `replicas`
        assert (name in hpas) != (name in scaled), name
        assert "replicas" not in dep["spec"], name
    # the edge scales on CPU, the worker on the booking queue
    [metric] = hpas["surgegate-edge"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpas["surgegate-edge"]["spec"]["minReplicas"] >= 2  # a budget of 1 still leaves a pod to drain to
    assert set(scaled) == {"surgegate-worker"}


def test_workers_scale_on_the_booking_queue() -> None:
    obj = one("ScaledObject", "surgegate-worker")
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"name": "surgegate-worker"}
    assert spec["minReplicaCount"] >= 1  # the worker also runs the periodic jobs
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis"
    # arq's queue is a sorted set named by Settings.queue_name; KEDA counts it with ZCARD
    assert trigger["metadata"]["listName"] == BOOKING_QUEUE_NAME == Settings().queue_name
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"address", "password"}
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {SECRET}


def secret_refs(c: dict[str, Any]) -> dict[str, bool]:
    """Variable -> optional, for every variable taken from the Secret."""
    refs = {}
    for var in c.get("env", []):
        assert "value" not in var, f"{var['name']} set in the clear"
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET
        assert ref["key"] == var["name"]
        refs[var["name"]] = ref.get("optional", False)
    return refs


def test_secrets_come_from_the_secret() -> None:
    known = env_names()
    per_role = {}
    for role in ("edge", "api", "worker"):
        [c] = containers(one("Deployment", f"surgegate-{role}"))
        refs = secret_refs(c)
        assert set(refs) <= known, set(refs) - known
        assert {v for v, optional in refs.items() if not optional} == REQUIRED_SECRETS
        per_role[role] = refs
    assert per_role["edge"] == per_role["api"] == per_role["worker"]  # they cannot drift apart
    [migrate] = containers(one("Job", "surgegate-migrate"))
    assert secret_refs(migrate) == {"SURGEGATE_DATABASE_URL": False}  # least privilege


def test_config_map_holds_valid_settings_and_no_secrets() -> None:
    data = one("ConfigMap", "surgegate-config")["data"]
    assert set(data) <= env_names(), set(data) - env_names()
    assert not set(data) & REQUIRED_SECRETS
    settings = Settings.from_env(data)  # raises SettingsError naming any bad value
    assert settings.host == "0.0.0.0"  # in a pod, the probes and Services come from outside
    for role in ("edge", "api", "worker"):
        [c] = containers(one("Deployment", f"surgegate-{role}"))
        assert c["envFrom"] == [{"configMapRef": {"name": "surgegate-config"}}]


def test_migrations_run_as_a_job_before_the_rollout() -> None:
    job = one("Job", "surgegate-migrate")
    [c] = containers(job)
    assert c["args"] == ["migrate"]
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert "pre-upgrade" in annotations["helm.sh/hook"].split(",")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # the plain-kubectl order is written in the file the operator applies first
    text = (K8S / "migrate-job.yaml").read_text()
    assert text.index("kubectl wait --for=condition=complete") < text.index(
        "kubectl apply -f deploy/k8s/surgegate.yaml"
    )


def test_every_container_runs_a_surgegate_command_of_this_version_as_non_root() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    parser = build_parser()
    for _, obj in OBJECTS:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # USER in deploy/Dockerfile
        for c in pod["containers"]:
            assert c["image"] == f"surgegate:{version}"
            parser.parse_args(c["args"])  # exits (SystemExit) on a command the CLI does not have
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
