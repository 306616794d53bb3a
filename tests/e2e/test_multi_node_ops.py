"""Operating several nodes: rate limits counted once for the whole cluster, and metrics and
readiness scraped from the real endpoints of two `authgate serve` processes on one PostgreSQL.

The nodes run with small limits (10 token requests and 10 introspections per client per
minute, 6 sign-in attempts per address per minute) so that a limit is reached by requests
split across both nodes. Limits count in minute windows aligned to the clock; a burst that
would straddle a minute boundary waits for the next minute first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from authgate import storage
from authgate.app import build_services
from authgate.config import Settings
from authgate.core import accounts, clients, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import ServiceAccess
from tests.e2e.test_multi_node import database
from tests.procs import (
    AUTHGATE,
    PASSWORD,
    Node,
    Processes,
    clean_env,
    free_port,
    introspect,
    token,
    wait_ready,
)

__all__ = ["database"]  # the module-scoped fixture, shared with test_multi_node
pytestmark = pytest.mark.slow
LIMIT = 10
SIGN_IN_LIMIT = 6
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


@dataclass
class Pair:
    a: Node
    b: Node
    database: str
    env: dict[str, str]
    limited: tuple[str, str]  # client_credentials app that hits the token limit
    inspector: tuple[str, str]  # app that hits the introspection limit


@pytest.fixture(scope="module")
def pair(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("multi-node-ops")
    port_a, port_b = free_port(), free_port()
    env = clean_env(
        AUTHGATE_ISSUER=f"http://127.0.0.1:{port_a}",
        AUTHGATE_DATABASE_URL=database,
        AUTHGATE_SECRET_KEY="multi-node-ops-secret-" + "k" * 32,
        AUTHGATE_DATA_DIR=str(workdir / "data"),
        AUTHGATE_TOKEN_RATE_PER_CLIENT=str(LIMIT),
        AUTHGATE_INTROSPECTION_RATE_PER_CLIENT=str(LIMIT),
        AUTHGATE_SIGN_IN_RATE_PER_IP=str(SIGN_IN_LIMIT),
        AUTHGATE_LOG_LEVEL="WARNING",
    )
    # Set up in-process: what `authgate db upgrade`, `users create` and `apps create` do.
    storage.upgrade(database)
    settings = Settings(
        issuer=env["AUTHGATE_ISSUER"],
        database_url=database,
        secret_key=env["AUTHGATE_SECRET_KEY"],
    )
    services = build_services(settings)
    try:
        accounts.create_user(
            services.ctx, SYSTEM, username="admin", password=PASSWORD, is_admin=True
        )
        apps = []
        for name in ("Limited", "Inspector"):
            fields = clients.AppFields(
                name=name, redirect_uris=(), grant_types=("client_credentials",)
            )
            app = clients.create_app(services.ctx, SYSTEM, fields)
            # client_credentials reaches only what an operator granted: authgate's own API.
            own_api = ServiceAccess(services.ctx.policy.audience)
            service_access.set_access(services.ctx, SYSTEM, app.id, [own_api])
            apps.append((app.id, clients.create_secret(services.ctx, SYSTEM, app.id)[1]))
    finally:
        services.store.close()
    processes = Processes()
    try:
        args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port"]
        a = Node(env["AUTHGATE_ISSUER"], processes.start([*args, str(port_a)], env, workdir, "a"))
        b = Node(
            f"http://127.0.0.1:{port_b}", processes.start([*args, str(port_b)], env, workdir, "b")
        )
        wait_ready(a, "node A")
        wait_ready(b, "node B")
        yield Pair(a, b, database, env, apps[0], apps[1])
    finally:
        processes.stop_all()


def fresh_window(needed_seconds: float = 6.0) -> None:
    """Wait for the next minute if the current one ends within ``needed_seconds``."""
    left = 60 - time.time() % 60
    if left < needed_seconds:
        time.sleep(left + 0.2)


def scrape(node: Node) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = httpx.get(f"{node.url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in resp.text.splitlines():
        match = SAMPLE.match(line)
        if line.startswith("#") or match is None:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def count_tokens(pair: Pair, client_id: str) -> int:
    engine = sa.create_engine(pair.database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM access_tokens WHERE app_id = :a")
            return int(conn.execute(query, {"a": client_id}).scalar_one())
    finally:
        engine.dispose()


def assert_limited(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    assert resp.json()["error"] == "temporarily_unavailable"
    assert "access_token" not in resp.json() and "active" not in resp.json()


def test_token_limit_is_shared_by_both_nodes_and_metrics_count_it(pair: Pair) -> None:
    before = {node.url: scrape(node) for node in (pair.a, pair.b)}
    fresh_window()
    nodes = [pair.a, pair.b] * (LIMIT // 2)
    for node in nodes:  # half the allowance on each node
        resp = token(node, pair.limited, grant_type="client_credentials")
        assert resp.status_code == 200, resp.text
    for node in (pair.a, pair.b):  # over the limit, whichever node is asked
        assert_limited(token(node, pair.limited, grant_type="client_credentials"))
    assert count_tokens(pair, pair.limited[0]) == LIMIT  # the refused requests issued nothing

    route = "/oauth2/tokens"
    for node in (pair.a, pair.b):
        was, now = before[node.url], scrape(node)

        def grew(name: str, **labels: str) -> float:
            return sample(now, name, **labels) - sample(was, name, **labels)  # noqa: B023

        ok = {"route": route, "method": "POST", "status": "200"}
        assert grew("authgate_http_requests_total", **ok) == LIMIT // 2
        refused = {"route": route, "method": "POST", "status": "429"}
        assert grew("authgate_http_requests_total", **refused) == 1
        assert grew("authgate_tokens_issued_total", grant_type="client_credentials") == LIMIT // 2
        error = {"endpoint": route, "error": "temporarily_unavailable"}
        assert grew("authgate_oauth_errors_total", **error) == 1
        # Every answered request is in the latency histogram.
        seconds = "authgate_http_request_duration_seconds_count"
        assert grew(seconds, route=route) == LIMIT // 2 + 1
        assert ("authgate_db_pool_connections_in_use", frozenset()) in now


def test_introspection_limit_is_shared_by_both_nodes(pair: Pair) -> None:
    fresh_window()
    issued = token(pair.a, pair.inspector, grant_type="client_credentials")
    assert issued.status_code == 200, issued.text
    value = issued.json()["access_token"]
    for node in [pair.b, pair.a] * (LIMIT // 2):
        assert introspect(node, pair.inspector, value)["active"] is True
    for node in (pair.a, pair.b):
        resp = httpx.post(
            f"{node.url}/oauth2/introspect", data={"token": value}, auth=pair.inspector, timeout=30
        )
        assert_limited(resp)


def test_sign_in_limit_per_address_is_shared_by_both_nodes(pair: Pair) -> None:
    fresh_window()

    def attempt(node: Node, username: str) -> httpx.Response:
        with httpx.Client(base_url=node.url, timeout=30) as browser:
            page = browser.get("/login")
            match = CSRF.search(page.text)
            assert match is not None, page.text
            form = {"username": username, "password": "wrong", "csrf_token": match.group(1)}
            return browser.post("/login", data=form)

    # Different usernames: the per-account slow-down must not be what answers here.
    for i, node in enumerate([pair.a, pair.b] * (SIGN_IN_LIMIT // 2)):
        resp = attempt(node, f"nobody{i}")
        assert resp.status_code == 401, resp.text
        assert "Incorrect username or password." in resp.text
    for node in (pair.a, pair.b):
        resp = attempt(node, "admin")
        assert resp.status_code == 429, resp.text
        assert 1 <= int(resp.headers["retry-after"]) <= 60


def test_readiness_follows_the_shared_schema_on_both_nodes(pair: Pair) -> None:
    for node in (pair.a, pair.b):
        resp = httpx.get(f"{node.url}/readyz", timeout=10)
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}
        assert resp.headers["cache-control"] == "no-store"
    engine = sa.create_engine(pair.database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            # A newer authgate migrated the database: these nodes must leave the rotation.
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        try:
            for node in (pair.a, pair.b):
                resp = httpx.get(f"{node.url}/readyz", timeout=10)
                assert resp.status_code == 503, resp.text
                assert resp.json() == {
                    "status": "unavailable",
                    "failed": ["schema"],
                    "checks": {
                        "database": "ok",
                        "writable": "ok",
                        "schema": "failed",
                        "signing_key": "ok",
                    },
                }
                assert httpx.get(f"{node.url}/healthz", timeout=10).status_code == 200
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": current})
        for node in (pair.a, pair.b):
            assert httpx.get(f"{node.url}/readyz", timeout=10).status_code == 200
    finally:
        engine.dispose()
