"""A real PostgreSQL outage under a real `authgate serve`: the test starts a cluster of its own
(scripts/pg.sh), stops it under the running node and starts it again.

While the database is down, every OAuth request answers 503 `temporarily_unavailable` (RFC 6749
§5.2 JSON, `Cache-Control: no-store`, a positive `Retry-After`), `/readyz` says not ready with
the database as the failed check, and `/healthz` stays 200 (the process is alive: an
orchestrator must not restart it for the database's outage). When the database is back, the
same process serves again without a restart, and whatever the outage interrupted is intact:
the code issued before it redeems once, the refresh token rotates, the token issued before it
is still active.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.flows import generate_pkce
from tests.procs import (
    REDIRECT_URI,
    Deployment,
    Node,
    PgCluster,
    Processes,
    introspect,
    own_pg_cluster,
    provision,
    sign_in_and_allow,
    token,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
RECOVERY_SECONDS = 30.0


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with own_pg_cluster() as pg:
        yield pg


@pytest.fixture
def deployment(cluster: PgCluster, tmp_path: Path) -> Iterator[Deployment]:
    processes = Processes()
    try:
        # The cluster is the test's own and is deleted afterwards: its `postgres` database will do.
        yield provision(cluster.url, tmp_path, processes, AUTHGATE_REFRESH_REUSE_GRACE_SECONDS="0")
    finally:
        processes.stop_all()


def exchange(node: Node, deployment: Deployment, code: str, verifier: str) -> httpx.Response:
    return token(
        node,
        deployment.web,
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
    )


def assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["cache-control"] == "no-store"
    assert int(resp.headers["retry-after"]) > 0
    body = resp.json()
    assert body["error"] == "temporarily_unavailable", body
    assert "access_token" not in body


def test_postgres_stopped_and_started_under_a_running_node(
    cluster: PgCluster, deployment: Deployment
) -> None:
    node = deployment.start("authgate")
    first = exchange(node, deployment, *new_code(node, deployment))
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    code, verifier = new_code(node, deployment)
    service = token(node, deployment.service, grant_type="client_credentials")
    assert service.status_code == 200, service.text

    cluster.stop()
    assert_unavailable(token(node, deployment.service, grant_type="client_credentials"))
    assert_unavailable(exchange(node, deployment, code, verifier))
    assert_unavailable(
        token(node, deployment.web, grant_type="refresh_token", refresh_token=refresh_token)
    )
    ready = httpx.get(f"{node.url}/readyz", timeout=30)
    assert ready.status_code == 503, ready.text
    assert ready.json()["failed"] == ["database"]
    assert httpx.get(f"{node.url}/healthz", timeout=30).status_code == 200
    assert node.proc.poll() is None

    cluster.start()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while httpx.get(f"{node.url}/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the node did not become ready again"
        time.sleep(0.2)
    assert node.proc.poll() is None  # the same process, never restarted

    redeemed = exchange(node, deployment, code, verifier)
    assert redeemed.status_code == 200, redeemed.text
    replay = exchange(node, deployment, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    rotated = token(node, deployment.web, grant_type="refresh_token", refresh_token=refresh_token)
    assert rotated.status_code == 200, rotated.text
    old = service.json()["access_token"]
    assert introspect(node, deployment.service, old)["active"] is True
    again = token(node, deployment.service, grant_type="client_credentials")
    assert again.status_code == 200, again.text
    log = deployment.log("authgate")
    assert "database unavailable" in log
    assert "unexpected error" not in log and "Traceback" not in log, log


def new_code(node: Node, deployment: Deployment) -> tuple[str, str]:
    pkce = generate_pkce()
    code = sign_in_and_allow(node, deployment.issuer, deployment.web[0], pkce.challenge)
    return code, pkce.verifier
