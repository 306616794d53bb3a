"""The deployment files in deploy/ agree with the product: what can be checked without Docker or
Kubernetes (the image runs `authgate serve` as a non-root user, health checks and probes point at
routes authgate has, migrations run `authgate db upgrade`, every node shares one database, one
secret and one issuer)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from authgate.web.routes import page_routes, protocol_routes

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SHARED = ("AUTHGATE_DATABASE_URL", "AUTHGATE_SECRET_KEY", "AUTHGATE_ISSUER")


def route_paths() -> set[str]:
    return {r.path for r in [*page_routes(), *protocol_routes("https://auth.example.com")]}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def instruction(name: str) -> list[str]:
    return [rest for keyword, rest in dockerfile() if keyword == name]


def command(value: str | list[str]) -> list[str]:
    """A command in exec form (list, or JSON in a Dockerfile) or shell form."""
    if isinstance(value, list):
        return value
    if value.startswith("["):
        parsed: list[str] = json.loads(value)
        return parsed
    return shlex.split(value)


def test_image_runs_authgate_serve_as_a_non_root_user() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    assert [command(c) for c in instruction("CMD")] == [["authgate", "serve"]]
    users = instruction("USER")
    assert users, "the image must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    keywords = [k for k, _ in dockerfile()]
    assert max(i for i, k in enumerate(keywords) if k == "USER") < keywords.index("CMD")
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in instruction("RUN"))
    env = " ".join(instruction("ENV"))
    assert re.search(r"\bAUTHGATE_HOST=0\.0\.0\.0\b", env), env


def test_image_healthcheck_calls_an_existing_route() -> None:
    (check,) = instruction("HEALTHCHECK")
    assert "CMD" in check
    assert "/healthz" in check
    assert "/healthz" in route_paths()
    # The slim image has no curl or wget: the check must use what is there.
    assert "curl" not in check and "wget" not in check


# compose.yaml


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def authgate_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if "AUTHGATE_DATABASE_URL" in (svc.get("environment") or {})
    }


def nodes() -> dict[str, dict[str, Any]]:
    """The services that run the server: the image's CMD or an explicit `authgate serve`."""
    return {
        name: svc
        for name, svc in authgate_services().items()
        if command(svc.get("command", ["authgate", "serve"]))[:2] == ["authgate", "serve"]
    }


def test_compose_has_postgres_a_migration_two_nodes_and_a_proxy() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres")
    assert command(services["migrate"]["command"]) == ["authgate", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert len(nodes()) >= 2, list(services)
    for name, node in nodes().items():
        assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_nodes_and_migration_share_database_secret_and_issuer() -> None:
    services = authgate_services()
    assert "migrate" in services
    for key in SHARED:
        values = {svc["environment"][key] for svc in services.values()}
        assert len(values) == 1, (key, values)
    env = services["migrate"]["environment"]
    assert env["AUTHGATE_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:" in env["AUTHGATE_DATABASE_URL"]
    assert env["AUTHGATE_SECRET_KEY"].startswith("${AUTHGATE_SECRET_KEY:?")  # never a default


def test_compose_proxy_config_exists_and_balances_every_node() -> None:
    proxy = compose()["services"]["proxy"]
    mounts = [v.split(":") for v in proxy["volumes"]]
    (source,) = [m[0] for m in mounts if m[1].startswith("/etc/nginx")]
    config = (DEPLOY / source).resolve()
    assert config.is_file(), config
    text = config.read_text()
    for name in nodes():
        assert re.search(rf"server\s+{re.escape(name)}:3000\b", text), name
    # authgate takes the first X-Forwarded-For entry: the proxy must overwrite, never append.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text
    assert compose()["x-authgate"]["environment"]["AUTHGATE_TRUST_PROXY_HEADERS"] == "true"


# kubernetes/


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests() if m["kind"] == kind]
    result: dict[str, Any] = found
    return result


def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (found,) = pod_spec["containers"]
    result: dict[str, Any] = found
    return result


def secret_refs(c: dict[str, Any]) -> set[str]:
    return {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}


def test_deployment_probes_point_at_existing_routes() -> None:
    deployment = manifest("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    c = container(deployment["spec"]["template"]["spec"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= route_paths()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in [*ports, *ports.values()]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert str(ports["http"]) == env["AUTHGATE_PORT"]
    assert env["AUTHGATE_HOST"] == "0.0.0.0"  # noqa: S104 - inside the pod, behind the Service
    assert env["AUTHGATE_ISSUER"].startswith("https://")
    assert command(c["command"]) == ["authgate", "serve"]


def test_pods_run_as_non_root() -> None:
    for kind in ("Deployment", "Job"):
        spec = manifest(kind)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        assert spec["securityContext"]["runAsUser"] != 0, kind


def test_migration_job_runs_db_upgrade_with_the_same_secret_and_image() -> None:
    job = manifest("Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    c = container(spec)
    assert command(c["command"]) == ["authgate", "db", "upgrade"]
    server = container(manifest("Deployment")["spec"]["template"]["spec"])
    assert c["image"] == server["image"]
    assert secret_refs(c) == secret_refs(server) == {manifest("Secret")["metadata"]["name"]}


def test_secret_example_holds_the_secret_key_and_database_url() -> None:
    secret = manifest("Secret")
    data = secret["stringData"]
    assert set(data) == {"AUTHGATE_SECRET_KEY", "AUTHGATE_DATABASE_URL"}
    assert len(data["AUTHGATE_SECRET_KEY"]) >= 32
    assert data["AUTHGATE_DATABASE_URL"].startswith("postgresql://")
    # Every node reads both from the Secret, never from a per-pod value.
    server = container(manifest("Deployment")["spec"]["template"]["spec"])
    assert not {e["name"] for e in server["env"]} & set(data)


def test_service_selects_the_server_pods() -> None:
    service = manifest("Service")
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    server = container(manifest("Deployment")["spec"]["template"]["spec"])
    names = {p["name"] for p in server["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    job_labels = manifest("Job")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()


@pytest.mark.parametrize("name", ["deployment.yaml", "service.yaml"])
def test_kustomization_lists_the_server_files(name: str) -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert name in kustomization["resources"]
    assert all((KUBERNETES / r).is_file() for r in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]
