"""Attack: tokens for every resource without any user (issue 16, item 1).

A stranger registers a client with ``grant_types: ["client_credentials"]`` (RFC 7591, open by
default) and asks for tokens for the registered resources. RFC 6749 §4.4 limits the grant to
resources "previously arranged with the authorization server": every client_credentials app,
operator-made too, gets tokens only for what an operator granted *that app*
(``core/service_access.py``). Over real HTTP (``live``); each refusal asserts the error body,
``Cache-Control: no-store`` and that no token row was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from authgate.app import Services
from authgate.core import registration_settings as runtime_settings
from authgate.core import service_access
from authgate.core.context import SYSTEM
from authgate.core.models import ServiceAccess
from authgate.resource_server import InvalidToken, TokenVerifier
from tests.conftest import ISSUER, PG_URL, grant_access, make_client
from tests.e2e.test_mcp_sdk import AUTHGATE, Processes, free_port
from tests.flows import RESOURCE
from tests.procs import Node, fresh_pg_database, provision, run_cli, token, wait_ready
from tests.security.helpers import snapshot
from tests.security.live import Live

MCP = "https://mcp.example.com/mcp"
OTHER = "https://other.example.com"
REGISTERED = (RESOURCE, MCP, OTHER, ISSUER)  # conftest's TEST_RESOURCES and authgate's own API


def tokens_of(services: Services, app_id: str) -> int:
    with services.store.engine.connect() as conn:
        sql = "SELECT count(*) FROM access_tokens WHERE app_id = :a"
        return int(conn.execute(sa.text(sql), {"a": app_id}).scalar_one())


def cc(http: httpx.Client, creds: tuple[str, str], **data: str) -> httpx.Response:
    return http.post(
        "/oauth2/tokens", data={"grant_type": "client_credentials", **data}, auth=creds
    )


def refused(resp: httpx.Response, error: str, *words: str) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert body["error"] == error and "access_token" not in body
    for word in words:
        assert word in body["error_description"], body
    return body


def issued_ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert "refresh_token" not in body
    return body


def register(http: httpx.Client, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = http.post(
        "/oauth2/register",
        json={"client_name": "Stranger", "grant_types": ["client_credentials"]},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_self_registered_client_gets_no_token_for_any_resource(
    live: Live, services: Services
) -> None:
    with live.client() as http:
        body = register(http)
        assert body["client_secret"].startswith("agcs_")
        # The registration says what the client got: nothing for client_credentials yet.
        assert body["grant_types"] == ["client_credentials"] and body["service_access"] == []
        creds = (body["client_id"], body["client_secret"])
        before = snapshot(services)
        for resource in REGISTERED:
            for scope in ("", "read", "read write", "admin"):
                data = {"resource": resource, **({"scope": scope} if scope else {})}
                refused(cc(http, creds, **data), "unauthorized_client", "operator", "grant")
        refused(cc(http, creds), "unauthorized_client", "operator")  # the default audience
    assert tokens_of(services, body["client_id"]) == 0
    assert snapshot(services) == before


def test_operator_app_without_a_grant_gets_nothing(live: Live, services: Services) -> None:
    app = make_client(services, grant_types=["client_credentials"], redirect_uris=[])
    creds = (app.id, app.secret or "")
    before = snapshot(services)
    with live.client() as http:
        for resource in REGISTERED:
            refused(cc(http, creds, resource=resource), "unauthorized_client", "operator")
        refused(cc(http, creds), "unauthorized_client")
    assert tokens_of(services, app.id) == 0 and snapshot(services) == before


def test_a_grant_opens_exactly_that_resource_and_scope(live: Live, services: Services) -> None:
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={RESOURCE: ["read"]},
    )
    creds = (app.id, app.secret or "")
    with live.client() as http:
        got = issued_ok(cc(http, creds, resource=RESOURCE))  # no scope asked: all granted
        assert got["scope"] == "read"
        assert issued_ok(cc(http, creds, resource=RESOURCE, scope="read"))["scope"] == "read"
        before = snapshot(services)
        refused(cc(http, creds, resource=RESOURCE, scope="write"), "invalid_scope", "write")
        refused(cc(http, creds, resource=RESOURCE, scope="read write"), "invalid_scope")
        for other in (MCP, OTHER, ISSUER, "https://unregistered.example.com"):
            refused(cc(http, creds, resource=other), "invalid_target", "not been granted")
        refused(cc(http, creds), "invalid_target")  # the default audience is not granted
        assert snapshot(services) == before
    rows = services.store.engine.connect()
    with rows as conn:
        stored = conn.execute(
            sa.text("SELECT audience, scope FROM access_tokens WHERE app_id = :a"), {"a": app.id}
        ).all()
    assert sorted(tuple(r) for r in stored) == [(RESOURCE, "read"), (RESOURCE, "read")]


def test_resource_server_kit_accepts_nothing_for_an_ungranted_resource(
    live: Live, services: Services
) -> None:
    """The best an app granted RESOURCE can hold is a RESOURCE token: the kit guarding MCP
    refuses it, and no MCP token can be had at all."""
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={RESOURCE: ["read"]},
    )
    creds = (app.id, app.secret or "")
    with live.client() as http:
        token = issued_ok(cc(http, creds, resource=RESOURCE))["access_token"]
        refused(cc(http, creds, resource=MCP), "invalid_target")

        def kit(resource: str) -> TokenVerifier:
            return TokenVerifier(
                ISSUER,
                resource,
                jwks_uri=f"{live.url}/.well-known/jwks.json",
                http_client=http,
                clock=lambda: services.ctx.clock.now().timestamp(),
            )

        assert kit(RESOURCE).verify_sync(token).client_id == app.id  # the kit does work
        with pytest.raises(InvalidToken):
            kit(OTHER).verify_sync(token)
    assert tokens_of(services, app.id) == 1


def test_initial_access_token_with_access_gives_exactly_that(
    live: Live, services: Services
) -> None:
    _, iat = runtime_settings.create_initial_access_token(
        services.ctx, SYSTEM, "partner", access=[ServiceAccess(MCP, ("read",))]
    )
    _, plain = runtime_settings.create_initial_access_token(services.ctx, SYSTEM, "plain")
    with live.client() as http:
        body = register(http, iat)
        assert body["service_access"] == [{"resource": MCP, "scopes": ["read"]}]
        creds = (body["client_id"], body["client_secret"])
        got = issued_ok(cc(http, creds, resource=MCP))
        assert got["scope"] == "read" and got["access_token"].startswith("agat_")
        refused(cc(http, creds, resource=RESOURCE), "invalid_target")
        refused(cc(http, creds), "invalid_target")
        # A token minted without access gives a registered client nothing.
        other = register(http, plain)
        assert other["service_access"] == []
        refused(cc(http, (other["client_id"], other["client_secret"])), "unauthorized_client")
        # A bad token presented where none is required is refused, not ignored.
        bad = http.post(
            "/oauth2/register",
            json={"grant_types": ["client_credentials"]},
            headers={"Authorization": "Bearer agiat_nope_nope"},
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
    assert tokens_of(services, body["client_id"]) == 1
    assert tokens_of(services, other["client_id"]) == 0


def test_revoking_the_grant_stops_new_tokens_at_once(live: Live, services: Services) -> None:
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={RESOURCE: ["read", "write"], MCP: []},
    )
    creds = (app.id, app.secret or "")
    with live.client() as http:
        issued_ok(cc(http, creds, resource=RESOURCE, scope="write"))
        service_access.revoke(services.ctx, SYSTEM, app.id, RESOURCE, ["write"])
        refused(cc(http, creds, resource=RESOURCE, scope="write"), "invalid_scope")
        assert issued_ok(cc(http, creds, resource=RESOURCE))["scope"] == "read"
        service_access.revoke(services.ctx, SYSTEM, app.id, RESOURCE)
        refused(cc(http, creds, resource=RESOURCE), "invalid_target")
        issued_ok(cc(http, creds, resource=MCP))
        service_access.set_access(services.ctx, SYSTEM, app.id, [])
        refused(cc(http, creds, resource=MCP), "unauthorized_client")
        # Granted again later (path (b) for any app): it works again.
        grant_access(services, app.id, {MCP: []})
        issued_ok(cc(http, creds, resource=MCP))
    assert tokens_of(services, app.id) == 4


@pytest.mark.slow
@pytest.mark.postgres
def test_grant_revoked_on_node_a_stops_node_b_next_token(tmp_path: Path) -> None:
    """Two `authgate serve` on one PostgreSQL: the grant revoked through A's API reaches B's
    client cache (the apps trigger) before B's very next client_credentials request."""
    processes = Processes()
    with fresh_pg_database(PG_URL, "cc_access") as url:
        try:
            deployment = provision(url, tmp_path, processes)
            env = deployment.env
            admin = run_cli(env, "tokens", "create", "--user", "admin", "--name", "t")["token"]
            a = deployment.start("a")
            port_b = free_port()
            args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(port_b)]
            b = Node(f"http://127.0.0.1:{port_b}", processes.start(args, env, tmp_path, "b"))
            wait_ready(b, "node B")
            service = deployment.service
            assert token(b, service, grant_type="client_credentials").status_code == 200
            put = httpx.put(
                f"{a.url}/api/v2/oauth2-provider/apps/{service[0]}/service-access",
                json=[],
                headers={"Authorization": f"Bearer {admin}"},
                timeout=30,
            )
            assert put.status_code == 200 and put.json() == [], put.text
            refused(token(b, service, grant_type="client_credentials"), "unauthorized_client")
        finally:
            processes.stop_all()
