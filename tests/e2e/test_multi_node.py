"""Several authgate nodes on one PostgreSQL database, as in production behind a load balancer.

Real processes on loopback: one fresh database, migrated once with `authgate db upgrade`, the
admin and the apps made with the CLI, then two `authgate serve` processes (same database URL,
secret key and issuer) on two ports. Whatever one node does, the other must see: a code
issued on A is redeemed on B, a refresh rotated on B, a revocation on A is what B's
introspection says, a key rotated on A is in B's JWKS within the key cache bound (30 s,
`policy.cache_ttl`; there is no setting to shorten it, so the rotation happens when the nodes
start and is checked last). Single use holds across nodes under concurrency, and a node killed
with SIGKILL in the middle of a burst loses no token a client received.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.flows import generate_pkce
from tests.procs import (
    AUTHGATE,
    PASSWORD,
    REDIRECT_URI,
    Node,
    Processes,
    clean_env,
    free_port,
    introspect,
    race,
    run_cli,
    sign_in_and_allow,
    token,
    wait_ready,
)

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("AUTHGATE_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("AUTHGATE_REQUIRE_POSTGRES") == "1"
KEY_CACHE_SECONDS = 30  # policy.cache_ttl: how stale a node's keys may be


@dataclass
class Cluster:
    issuer: str
    env: dict[str, str]
    workdir: Path
    processes: Processes
    a: Node
    b: Node
    admin_token: str
    web: tuple[str, str]  # authorization_code + refresh_token app: (client_id, secret)
    service: tuple[str, str]  # client_credentials app
    rotated_kid: str  # the key A promoted to active when the nodes started
    published_kid: str  # the next key that rotation created (B had never seen it)
    rotated_at: float  # time.monotonic() of the rotation

    def cli(self, *args: str) -> Any:
        return run_cli(self.env, *args)

    def start_node(self, name: str) -> Node:
        port = free_port()
        args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.processes.start(args, self.env, self.workdir, name)
        return Node(f"http://127.0.0.1:{port}", proc)


def kids(node: Node) -> set[str]:
    resp = httpx.get(f"{node.url}/.well-known/jwks.json", timeout=10)
    assert resp.status_code == 200, resp.text
    return {key["kid"] for key in resp.json()["keys"]}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    if PG_URL is None:
        if REQUIRE_PG:
            pytest.fail("AUTHGATE_REQUIRE_POSTGRES=1 but AUTHGATE_TEST_POSTGRES_URL is not set")
        pytest.skip("several nodes need PostgreSQL (set AUTHGATE_TEST_POSTGRES_URL)")
    name = f"authgate_mn_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def cluster(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("multi-node")
    port_a = free_port()
    issuer = f"http://127.0.0.1:{port_a}"  # one logical issuer for every node
    env = clean_env(
        AUTHGATE_ISSUER=issuer,
        AUTHGATE_DATABASE_URL=database,
        AUTHGATE_SECRET_KEY="multi-node-secret-" + "k" * 32,
        AUTHGATE_DATA_DIR=str(workdir / "data"),
        AUTHGATE_REFRESH_REUSE_GRACE_SECONDS="0",
        AUTHGATE_LOG_LEVEL="WARNING",
    )
    run_cli(env, "db", "upgrade")
    run_cli(env, "users", "create", "--username", "admin", "--admin", "--password", PASSWORD)
    admin_token = run_cli(env, "tokens", "create", "--user", "admin", "--name", "tests")["token"]
    web = run_cli(env, "apps", "create", "--name", "Web app", "--redirect-uri", REDIRECT_URI)
    web_secret = run_cli(env, "apps", "secrets", "create", web["id"])["client_secret_full"]
    svc = run_cli(env, "apps", "create", "--name", "Service", "--grant-type", "client_credentials")
    svc_secret = run_cli(env, "apps", "secrets", "create", svc["id"])["client_secret_full"]
    # client_credentials reaches only what an operator granted: authgate's own API.
    run_cli(env, "apps", "access", "grant", svc["id"], "--resource", issuer)

    processes = Processes()
    try:
        # Both nodes start together on a database without keys, as a fresh deployment does.
        args = [str(AUTHGATE), "serve", "--host", "127.0.0.1"]
        port_b = free_port()
        a = Node(issuer, processes.start([*args, "--port", str(port_a)], env, workdir, "a"))
        b = Node(
            f"http://127.0.0.1:{port_b}",
            processes.start([*args, "--port", str(port_b)], env, workdir, "b"),
        )
        wait_ready(a, "node A")
        wait_ready(b, "node B")
        before = kids(b)
        # Rotate on A now; B's JWKS is checked last (test_key_rotated_on_a_reaches_b_jwks).
        resp = httpx.post(
            f"{a.url}/api/v2/keys/rotate",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
        rotated_at = time.monotonic()
        assert resp.status_code == 200, resp.text
        fresh = kids(a) - before
        assert len(fresh) == 1, (before, kids(a))
        yield Cluster(
            issuer,
            env,
            workdir,
            processes,
            a,
            b,
            admin_token,
            (web["id"], web_secret),
            (svc["id"], svc_secret),
            resp.json()["kid"],
            fresh.pop(),
            rotated_at,
        )
    finally:
        processes.stop_all()


def new_code(cluster: Cluster, node: Node) -> tuple[str, str]:
    pkce = generate_pkce()
    return sign_in_and_allow(node, cluster.issuer, cluster.web[0], pkce.challenge), pkce.verifier


def exchange(node: Node, cluster: Cluster, code: str, verifier: str) -> httpx.Response:
    return token(
        node,
        cluster.web,
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
    )


def test_code_from_a_redeemed_on_b_refreshed_on_b_revoked_on_a(cluster: Cluster) -> None:
    code, verifier = new_code(cluster, cluster.a)
    issued = exchange(cluster.b, cluster, code, verifier)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert introspect(cluster.a, cluster.web, tokens["access_token"])["active"] is True

    refreshed = token(
        cluster.b, cluster.web, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    rotated = refreshed.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    # The old refresh token was used on B: A refuses it (grace is 0 here).
    again = token(
        cluster.a, cluster.web, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


def test_revocation_on_a_seen_by_introspection_on_b(cluster: Cluster) -> None:
    code, verifier = new_code(cluster, cluster.b)
    issued = exchange(cluster.a, cluster, code, verifier)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert introspect(cluster.b, cluster.web, tokens["refresh_token"])["active"] is True
    assert introspect(cluster.b, cluster.web, tokens["access_token"])["active"] is True

    revoked = httpx.post(
        f"{cluster.a.url}/oauth2/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=cluster.web,
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    # Revoking a refresh token ends its grant, access tokens included (RFC 7009 §2.1): no cache.
    assert introspect(cluster.b, cluster.web, tokens["refresh_token"]) == {"active": False}
    assert introspect(cluster.b, cluster.web, tokens["access_token"]) == {"active": False}


def test_one_code_raced_across_both_nodes_is_redeemed_once(cluster: Cluster) -> None:
    code, verifier = new_code(cluster, cluster.a)
    nodes = [cluster.a, cluster.b] * 5
    results = race([partial(exchange, n, cluster, code, verifier) for n in nodes])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 9, [(r.status_code, r.text) for r in results]
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)


def test_one_refresh_token_raced_across_both_nodes_is_used_once(cluster: Cluster) -> None:
    code, verifier = new_code(cluster, cluster.b)
    issued = exchange(cluster.b, cluster, code, verifier)
    assert issued.status_code == 200, issued.text
    refresh = issued.json()["refresh_token"]
    nodes = [cluster.a, cluster.b] * 5
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    results = race([partial(token, n, cluster.web, **form) for n in nodes])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 9, [(r.status_code, r.text) for r in results]
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)


def test_key_rotated_on_a_reaches_b_jwks_within_cache_bound(cluster: Cluster) -> None:
    deadline = cluster.rotated_at + KEY_CACHE_SECONDS + 1
    while cluster.published_kid not in kids(cluster.b):
        assert time.monotonic() < deadline, (
            f"B's JWKS lacks {cluster.published_kid} {KEY_CACHE_SECONDS + 1} s after the rotation"
        )
        time.sleep(0.25)
    # B's keys are fresh now: it signs with the key A promoted, and A still verifies its tokens.
    issued = token(cluster.b, cluster.service, grant_type="client_credentials")
    assert issued.status_code == 200, issued.text
    access = issued.json()["access_token"]
    if access.count(".") == 2:  # a JWT (the issuer's own API): its header names the key
        header = access.split(".")[0]
        header_json = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        assert header_json["kid"] == cluster.rotated_kid
    assert introspect(cluster.a, cluster.service, access)["active"] is True


def test_node_killed_mid_burst_loses_no_issued_token(cluster: Cluster) -> None:
    victim = cluster.start_node("victim")
    wait_ready(victim, "node C")
    total, kill_after = 200, 60
    done = threading.Semaphore(0)
    lock = threading.Lock()
    received: list[str] = []
    failures: list[str] = []

    def one(i: int) -> None:
        node = victim if i % 2 else cluster.a
        try:
            resp = token(node, cluster.service, grant_type="client_credentials")
        except httpx.TransportError as exc:  # the victim died under this request
            with lock:
                failures.append(f"{node.url}: {type(exc).__name__}")
        else:
            with lock:
                if resp.status_code == 200:
                    received.append(resp.json()["access_token"])
                else:
                    failures.append(f"{node.url}: {resp.status_code} {resp.text}")
        done.release()

    with ThreadPoolExecutor(16) as pool:
        for i in range(total):
            pool.submit(one, i)
        for _ in range(kill_after):
            assert done.acquire(timeout=30)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
    assert victim.proc.returncode == -signal.SIGKILL
    # The kill was mid-burst (later requests to the victim failed), and only requests to the
    # killed node failed, and only by losing their connection.
    assert failures, "the burst ended before the kill"
    assert all(f.startswith(victim.url) for f in failures), failures
    assert len(received) >= total // 2, (len(received), failures)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: introspect(cluster.a, cluster.service, t), received))
    inactive = [a for a in answers if a.get("active") is not True]
    assert not inactive, f"{len(inactive)} of {len(received)} issued tokens are not active"

    # The survivor keeps serving.
    assert httpx.get(f"{cluster.a.url}/readyz", timeout=10).status_code == 200
    after = token(cluster.a, cluster.service, grant_type="client_credentials")
    assert after.status_code == 200, after.text
    assert introspect(cluster.b, cluster.service, after.json()["access_token"])["active"] is True


def _flow_with_code(cluster: Cluster, code_prefix: str, last_kind: str) -> dict[str, Any]:
    """The flow (from node B's API) whose code has this prefix, once its ``last_kind`` step is
    written (each node writes its steps in batches, a moment after the request)."""
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    deadline = time.monotonic() + 20
    while True:
        listed = httpx.get(
            f"{cluster.b.url}/api/v2/flows",
            params={"client_id": cluster.web[0], "limit": 200},
            headers=headers,
            timeout=10,
        )
        assert listed.status_code == 200, listed.text
        for flow in listed.json()["flows"]:
            timeline = httpx.get(
                f"{cluster.b.url}/api/v2/flows/{flow['id']}", headers=headers, timeout=10
            ).json()
            prefixes = [s["detail"].get("code_prefix") for s in timeline["steps"]]
            kinds = [s["kind"] for s in timeline["steps"]]
            if code_prefix in prefixes and last_kind in kinds:
                return dict(timeline)
        assert time.monotonic() < deadline, "the flow's steps never all arrived"
        time.sleep(0.25)


def test_a_flow_across_both_nodes_is_one_flow(cluster: Cluster) -> None:
    pkce = generate_pkce()
    query = {
        "client_id": cluster.web[0],
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "state": uuid.uuid4().hex,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    path = "/oauth2/authorize?" + urlencode(query)
    with httpx.Client(follow_redirects=False, timeout=30) as person:
        # Asked on A, signed in on B, the consent page on A, the decision posted on B: the
        # session and the flow id (derived from the request) hold on either node.
        first = person.get(f"{cluster.a.url}{path}")
        assert first.status_code == 302 and first.headers["location"].startswith("/login")
        form = person.get(f"{cluster.b.url}{first.headers['location']}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = person.post(
            f"{cluster.b.url}/login",
            data={
                "username": "admin",
                "password": PASSWORD,
                "csrf_token": csrf.group(1),
                "return_to": path,
            },
        )
        assert signed.status_code == 303, signed.text
        page = person.get(f"{cluster.a.url}{path}")
        if page.status_code == 200:  # the consent page (an earlier test may be remembered)
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf is not None
            page = person.post(
                f"{cluster.b.url}{path}", data={"csrf_token": csrf.group(1), "decision": "allow"}
            )
        assert page.status_code == 302, page.text
        code = parse_qs(urlsplit(page.headers["location"]).query)["code"][0]
    issued = exchange(cluster.a, cluster, code, pkce.verifier)  # redeemed on A
    assert issued.status_code == 200, issued.text
    refreshed = token(  # refreshed on B
        cluster.b,
        cluster.web,
        grant_type="refresh_token",
        refresh_token=issued.json()["refresh_token"],
    )
    assert refreshed.status_code == 200, refreshed.text
    revoked = httpx.post(  # revoked on A
        f"{cluster.a.url}/oauth2/revoke",
        data={"token": refreshed.json()["refresh_token"]},
        auth=cluster.web,
        timeout=30,
    )
    assert revoked.status_code == 200

    timeline = _flow_with_code(cluster, code.split("_")[1], "revocation")
    kinds = [s["kind"] for s in timeline["steps"]]
    assert kinds[:2] == ["authorize", "sign_in"], kinds
    assert kinds[-4:] == ["code_issued", "token", "refresh", "revocation"], kinds
    assert timeline["flow"]["user_id"] is not None
    assert timeline["flow"]["refusals"] == 0
    # Its steps came from requests to both nodes, each with its own request id.
    assert len({s["request_id"] for s in timeline["steps"]}) >= 6
    for value in (code, issued.json()["refresh_token"], refreshed.json()["access_token"]):
        assert value not in json.dumps(timeline)
