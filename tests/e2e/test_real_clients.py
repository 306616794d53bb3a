"""End to end, the MCP clients people use, each from its real registration body or Client ID
Metadata Document (tests/fixtures/clients/, each with the public source it came from): per client,
one test that it connects and one that it stays connected.

Every test walks the whole way a client does against `examples/mcp_server` protected by authgate:

1. discovery over HTTP: the MCP server's 401 names its RFC 9728 resource metadata, which names
   authgate, whose RFC 8414 metadata names the endpoints;
2. dynamic registration (RFC 7591) with the client's body, or the client's document served by a
   local HTTPS server (authgate's fetcher may reach 127.0.0.1 and trusts the test CA);
3. authorization with the scopes that client sends, sign-in and consent on authgate's pages;
4. the code exchange with the auth method that client uses (none + PKCE, client_secret_post,
   or private_key_jwt signed with the client's own key published at its jwks_uri);
5. a real MCP call (the `mcp` SDK's client session, tool `whoami`), and the step-up a client
   makes when its token lacks a scope the MCP server needs (403 insufficient_scope, `scope=`);
6. refresh (`test_real_client_connects`): a plain rotation; and (`..._stays_connected`) the
   retry of a refresh whose response was lost, two processes of one installation each
   presenting the token they hold about 76 s apart (issue 17 item 3), and the reuse after the
   window that is theft and revokes the family.

authgate runs in this process (uvicorn on a loopback port, real HTTP) so that the test moves its
clock (tests/clock.py); the MCP server is a real process on its own port.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
import sqlalchemy as sa
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from authgate import storage
from authgate.app import Services, build_services, create_app, warm_up
from authgate.config import Settings
from authgate.core import accounts, resources
from authgate.core.client_assertion import ASSERTION_TYPE
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from authgate.core.resources import ResourceFields
from authgate.storage.sql.tables import refresh_tokens
from tests.clock import MovableClock
from tests.e2e.test_mcp_sdk import EXAMPLE, Processes, clean_env, free_port, wait_until
from tests.fetch.server import DocumentServer, Route, write_certificates
from tests.flows import csrf_from, generate_pkce

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "clients"
SCOPE = "mcp:tools"
PASSWORD = "correct horse battery staple"
# Superseded refresh tokens presented this long after rotation by a second process of the same
# CLI have been observed (issue 17 item 3): the default window must cover it.
SECOND_PROCESS_DELAY = timedelta(seconds=76)
# A retry of a refresh whose response was lost comes this soon.
RETRY_DELAY = timedelta(seconds=2)
# Far past any reuse window: a used token presented now can only be a thief's copy.
THEFT_DELAY = timedelta(days=1)


@dataclass(frozen=True)
class RealClient:
    """What one client sends, from its fixture and its documented behaviour."""

    id: str
    fixture: str
    # The redirect URI it authorizes with ({port} is a free loopback port of the test).
    redirect_uri: str
    # How it picks the scope: "prm" (the resource metadata's scopes_supported), "prm+offline"
    # (those and offline_access), "as" (the authorization server's scopes_supported, the MCP
    # Python SDK's fallback), or a literal value.
    scope: str
    # How it authenticates at the token endpoint.
    auth: str = "none"
    # Appended to the MCP server's URL in its `resource` parameter: a user who pastes the URL
    # with a trailing slash gets it sent as is (issue 17 item 4).
    resource_suffix: str = ""

    @property
    def document(self) -> bool:
        return self.fixture.endswith(".document.json")

    def metadata(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads((FIXTURES / self.fixture).read_text())
        assert body.get("_source", "").startswith("https://"), self.fixture
        return {k: v for k, v in body.items() if not k.startswith("_")}


CLIENTS = [
    RealClient(
        "claude-ai",
        "claude-ai.document.json",
        "https://claude.ai/api/mcp/auth_callback",
        "claudeai",
        # The connector URL as configured in https://github.com/anthropics/claude-ai-mcp/issues/124
        resource_suffix="/",
    ),
    RealClient(
        # claude.ai where the server does not advertise Client ID Metadata Documents.
        "claude-ai-registration",
        "claude-ai.registration.json",
        "https://claude.ai/api/mcp/auth_callback",
        "claudeai",
    ),
    RealClient(
        "claude-desktop",
        "claude-desktop.registration.json",
        "https://claude.ai/api/mcp/auth_callback",
        "claudeai",
    ),
    RealClient(
        "claude-code", "claude-code.document.json", "http://localhost:{port}/callback", "prm"
    ),
    RealClient(
        "chatgpt",
        "chatgpt.document.json",
        "https://chatgpt.com/connector_platform_oauth_redirect",
        "prm+offline",
        auth="private_key_jwt",
    ),
    RealClient("vscode", "vscode.registration.json", "http://127.0.0.1:33418/", "prm"),
    RealClient(
        "cursor",
        "cursor.registration.json",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "prm",
    ),
    RealClient(
        "codex",
        "codex.registration.json",
        "http://127.0.0.1:37819/callback/6MFBM1In3Ey-",
        "prm",
    ),
    RealClient(
        "mcp-remote", "mcp-remote.registration.json", "http://localhost:3334/oauth/callback", "prm"
    ),
    RealClient(
        "mcp-python-sdk",
        "mcp-python-sdk.registration.json",
        "http://127.0.0.1:8000/auth/github",
        "as",
        auth="client_secret_post",
    ),
]


# --- the world: authgate in process over HTTP, the example MCP server, a document server ---


@dataclass
class World:
    issuer: str
    mcp_url: str
    services: Services
    clock: MovableClock
    docs: DocumentServer
    start: datetime


@contextmanager
def _serve(settings: Settings, services: Services) -> Iterator[None]:
    """authgate's app on the issuer's port, over real HTTP, until the block ends."""
    app = create_app(settings, services=services)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", _port(settings.issuer)))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("authgate did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("real-clients")
    issuer = f"http://127.0.0.1:{free_port()}"
    mcp_port = free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    procs = Processes()
    try:
        # The MCP server starts while authgate is being set up (it asks authgate nothing before
        # the first token arrives).
        env = clean_env(
            AUTHGATE_ISSUER=issuer,
            MCP_RESOURCE=mcp_url,
            MCP_HOST="127.0.0.1",
            MCP_PORT=str(mcp_port),
            MCP_REQUIRED_SCOPES=SCOPE,
        )
        proc = procs.start([sys.executable, str(EXAMPLE)], env, workdir, "mcp")
        ca, cert, key = write_certificates(workdir)
        with DocumentServer(cert, key) as docs, _authgate(workdir, issuer, ca, mcp_url) as ag:
            prm = f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp"
            wait_until(lambda: httpx.get(prm).status_code == 200, proc, "the example MCP server")
            services, clock = ag
            yield World(issuer, mcp_url, services, clock, docs, clock.now())
    finally:
        procs.stop_all()


@contextmanager
def _authgate(
    workdir: Path, issuer: str, ca: Path, mcp_url: str
) -> Iterator[tuple[Services, MovableClock]]:
    """authgate on `issuer`, in this process, with the MCP server as a resource."""
    database_url = f"sqlite:///{workdir / 'authgate.db'}"
    storage.upgrade(database_url)
    settings = Settings(
        issuer=issuer,
        data_dir=workdir,
        database_url=database_url,
        secret_key="real-clients-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(ca),
        fetch_timeout_seconds=2,
        # Every token minted here lies in the real past (see the clock below) yet must still be
        # good for the MCP server, which checks expiry against the real clock.
        access_token_ttl_seconds=6 * 3600,
        # Every test registers and signs in from 127.0.0.1, and the clock returns to the same
        # hour for each: the per-address limits would count them all as one visitor.
        registration_rate_per_ip=1000,
        sign_in_rate_per_ip=1000,
        log_level="WARNING",
    )
    # authgate's clock runs two hours behind: a test may move it forward by a day (the theft
    # case) and the next test starts again from here.
    clock = MovableClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2))
    services = build_services(settings, clock=clock)
    try:
        warm_up(services)
        resources.create_resource(
            services.ctx,
            SYSTEM,
            ResourceFields(
                identifier=mcp_url,
                name="Example MCP server",
                scopes=(ScopeInfo(SCOPE, "Call the example tools"),),
            ),
        )
        with _serve(settings, services):
            yield services, clock
    finally:
        services.store.close()


# --- one client's journey ---


@dataclass
class Journey:
    world: World
    client: RealClient
    http: httpx.Client
    metadata: dict[str, Any] = field(default_factory=dict)
    client_id: str = ""
    client_secret: str | None = None
    key: RSAKey | None = None
    redirect_uri: str = ""
    # When the client's current authorization began: tokens of an earlier authorization (one it
    # stepped up from) are not part of the refresh family the tests follow.
    authorized_at: datetime | None = None
    user_id: str = ""

    # -- token endpoint authentication, as this client does it --

    def authenticate(self, data: dict[str, str]) -> dict[str, str]:
        data = {**data, "client_id": self.client_id}
        if self.client.auth == "client_secret_post":
            assert self.client_secret is not None
            data["client_secret"] = self.client_secret
        elif self.client.auth == "private_key_jwt":
            assert self.key is not None
            now = int(self.world.clock.now().timestamp())
            claims = {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": self.metadata["token_endpoint"],
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + 60,
            }
            header = {"alg": "RS256", "kid": self.key.kid}
            data["client_assertion_type"] = ASSERTION_TYPE
            data["client_assertion"] = jwt.encode(header, claims, self.key)
        return data

    def token(self, **data: str) -> httpx.Response:
        return self.http.post(self.metadata["token_endpoint"], data=self.authenticate(data))

    @property
    def resource(self) -> str:
        """The `resource` parameter (RFC 8707) this client sends."""
        return self.world.mcp_url + self.client.resource_suffix

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.token(
            grant_type="refresh_token", refresh_token=refresh_token, resource=self.resource
        )


def discover(world: World, http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MCP server's 401 → its resource metadata → authgate's metadata."""
    first = http.post(world.mcp_url, json=initialize(), headers=MCP_HEADERS)
    assert first.status_code == 401, first.text
    challenge = first.headers["www-authenticate"]
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found is not None, challenge
    prm_resp = http.get(found.group(1))
    assert prm_resp.status_code == 200, prm_resp.text
    prm: dict[str, Any] = prm_resp.json()
    assert prm["resource"] == world.mcp_url
    assert prm["authorization_servers"] in ([world.issuer], [world.issuer + "/"])
    as_resp = http.get(f"{world.issuer}/.well-known/oauth-authorization-server")
    assert as_resp.status_code == 200, as_resp.text
    meta: dict[str, Any] = as_resp.json()
    assert meta["issuer"] == world.issuer
    assert "S256" in meta["code_challenge_methods_supported"]
    return prm, meta


MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def initialize() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }


def register(journey: Journey) -> None:
    """RFC 7591 registration with the client's own body."""
    body = journey.client.metadata()
    endpoint = journey.metadata.get("registration_endpoint")
    assert endpoint, journey.metadata
    resp = journey.http.post(endpoint, json=body)
    assert resp.status_code == 201, resp.text
    registered: dict[str, Any] = resp.json()
    journey.client_id = registered["client_id"]
    journey.client_secret = registered.get("client_secret")
    # What was actually registered (RFC 7591 §3.2.1): only what authgate supports, and what
    # this client can use.
    supported = set(journey.metadata["grant_types_supported"])
    assert {"authorization_code", "refresh_token"} <= set(registered["grant_types"])
    assert set(registered["grant_types"]) <= supported, registered
    assert registered["token_endpoint_auth_method"] == journey.client.auth
    assert registered["redirect_uris"] == body["redirect_uris"]
    if journey.client.auth == "client_secret_post":
        assert journey.client_secret


def publish(journey: Journey) -> None:
    """The client's document at a local HTTPS URL that is its client_id (and, for a client that
    signs its assertions, its public keys at the jwks_uri)."""
    docs = journey.world.docs
    # A path of its own per test: each test is a new installation with a client of its own.
    path = f"/{journey.client.id}/{uuid.uuid4().hex[:8]}/client.json"
    document = journey.client.metadata()
    document["client_id"] = docs.url(path)
    if "jwks_uri" in document:
        journey.key = RSAKey.generate_key(2048, parameters={"kid": "chatgpt-1"}, private=True)
        jwks_path = path.replace("client.json", "jwks.json")
        keys = {"keys": [dict(journey.key.as_dict(private=False))]}
        docs.routes[jwks_path] = Route.json(keys, cache_control="max-age=600")
        document["jwks_uri"] = docs.url(jwks_path)
    docs.routes[path] = Route.json(document, cache_control="max-age=600")
    assert journey.metadata.get("client_id_metadata_document_supported") is True
    if journey.client.auth == "private_key_jwt":
        assert "private_key_jwt" in journey.metadata["token_endpoint_auth_methods_supported"]
    journey.client_id = document["client_id"]


def requested_scope(journey: Journey, prm: dict[str, Any]) -> str:
    kind = journey.client.scope
    if kind == "prm":
        return " ".join(prm["scopes_supported"])
    if kind == "prm+offline":
        return " ".join([*prm["scopes_supported"], "offline_access"])
    if kind == "as":
        return " ".join(journey.metadata["scopes_supported"])
    return kind


def sign_in(journey: Journey, browser: httpx.Client) -> None:
    """A person of their own for each test (as each test is an installation of its own): the
    sign-in limits per username see one person signing in once."""
    username = f"{journey.client.id}-{uuid.uuid4().hex[:8]}"
    user = accounts.create_user(
        journey.world.services.ctx, SYSTEM, username=username, password=PASSWORD
    )
    journey.user_id = user.id
    page = browser.get("/login")
    assert page.status_code == 200, page.text
    form = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page)}
    resp = browser.post("/login", data=form)
    assert resp.status_code == 303, (resp.status_code, resp.text)


def authorize(journey: Journey, browser: httpx.Client, scope: str) -> dict[str, Any]:
    """The browser part (sign-in and consent on authgate's pages) and the code exchange."""
    journey.authorized_at = journey.world.clock.now()
    pkce = generate_pkce()
    state = uuid.uuid4().hex
    params = {
        "response_type": "code",
        "client_id": journey.client_id,
        "redirect_uri": journey.redirect_uri,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": state,
        "resource": journey.resource,
        "scope": scope,
    }
    endpoint = journey.metadata["authorization_endpoint"]
    page = browser.get(endpoint, params=params)
    if page.status_code == 200:  # the consent page (a remembered consent skips it)
        assert "consent-form" in page.text, page.text
        page = browser.post(
            str(page.request.url), data={"csrf_token": csrf_from(page), "decision": "allow"}
        )
    assert page.status_code == 302, (page.status_code, page.headers, page.text)
    location = page.headers["location"]
    assert location.startswith(journey.redirect_uri.split("?")[0]), location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert "error" not in query, query
    assert query["state"] == state
    assert query["iss"] == journey.world.issuer  # RFC 9207
    resp = journey.token(
        grant_type="authorization_code",
        code=query["code"],
        redirect_uri=journey.redirect_uri,
        code_verifier=pkce.verifier,
        resource=journey.resource,
    )
    return issued(resp)


def issued(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"] and body["refresh_token"], body
    return body


def granted(body: dict[str, Any]) -> set[str]:
    return set(str(body.get("scope", "")).split())


async def _whoami(url: str, access_token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool("whoami", {})
        assert not result.is_error, result
        assert result.structured_content is not None, result
        return dict(result.structured_content)


def call_mcp(journey: Journey, access_token: str) -> None:
    """A real MCP session with the token: initialize, then the `whoami` tool."""
    who = asyncio.run(_whoami(journey.world.mcp_url, access_token))
    assert who["subject"] == journey.user_id
    assert who["client_id"] == journey.client_id
    assert SCOPE in who["scopes"]
    assert who["resource"] == journey.world.mcp_url  # the registered identifier


def step_up_scope(journey: Journey, access_token: str) -> str:
    """The MCP server refuses a token without its scope with 403 insufficient_scope and names the
    scope to ask for (RFC 6750 §3, MCP step-up); returns that scope."""
    resp = journey.http.post(
        journey.world.mcp_url,
        json=initialize(),
        headers={**MCP_HEADERS, "Authorization": f"Bearer {access_token}"},
    )
    assert resp.status_code == 403, resp.text
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge, challenge
    found = re.search(r'scope="([^"]*)"', challenge)
    assert found is not None, f"no scope= in the 403 challenge: {challenge}"
    assert SCOPE in found.group(1).split()
    return found.group(1)


def live_refresh_tokens(journey: Journey) -> int:
    """Refresh tokens of this client's current authorization that could still be redeemed as a
    new head of the chain."""
    table = refresh_tokens
    query = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(
            table.c.app_id == journey.client_id,
            table.c.consumed_at.is_(None),
            table.c.revoked_at.is_(None),
            table.c.expires_at > journey.world.clock.now(),
            table.c.created_at >= journey.authorized_at,
        )
    )
    with journey.world.services.store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def assert_one_branch(journey: Journey) -> None:
    assert live_refresh_tokens(journey) == 1, "the refresh token family forked"


# --- the tests ---


@contextmanager
def connected(world: World, client: RealClient) -> Iterator[tuple[Journey, dict[str, Any]]]:
    """Steps 1-5: the client discovers authgate, registers or is fetched, the user signs in and
    allows, the client gets its tokens (stepping up if it asked for too little) and calls the
    MCP server. Yields the journey and the tokens it holds."""
    world.clock.current = world.start + timedelta(minutes=CLIENTS.index(client))
    redirect_uri = client.redirect_uri.format(port=free_port())
    with (
        httpx.Client(timeout=30, follow_redirects=False) as http,
        httpx.Client(base_url=world.issuer, timeout=30, follow_redirects=False) as browser,
    ):
        journey = Journey(world, client, http, redirect_uri=redirect_uri)

        # 1. Discovery.
        prm, journey.metadata = discover(world, http)

        # 2. Registration or document.
        if client.document:
            publish(journey)
        else:
            register(journey)

        # 3-4. Authorization with the scopes this client sends, consent, the code exchange.
        sign_in(journey, browser)
        scope = requested_scope(journey, prm)
        tokens = authorize(journey, browser, scope)
        names = granted(tokens)
        # What the client asked for, narrowed to what the resource defines (RFC 6749 §3.3);
        # offline_access and OpenID scopes are accepted, not refused.
        assert names <= set(scope.split()), (scope, tokens)
        if SCOPE not in names:
            # It asked for nothing the MCP server needs (claude.ai's "claudeai"): the token has
            # an empty scope, the MCP server says which scope, the client steps up.
            assert names <= {"offline_access", "openid", "profile", "email"}, tokens
            world.clock.advance(seconds=5)  # the user consents again
            tokens = authorize(journey, browser, step_up_scope(journey, tokens["access_token"]))
            assert SCOPE in granted(tokens), tokens

        # 5. A real MCP call with the token.
        call_mcp(journey, tokens["access_token"])
        yield journey, tokens


@pytest.mark.parametrize("client", CLIENTS, ids=[c.id for c in CLIENTS])
def test_real_client_connects(world: World, client: RealClient) -> None:
    with connected(world, client) as (journey, tokens):
        # A plain rotation keeps the scope, and the new token works.
        rotated = issued(journey.refresh(tokens["refresh_token"]))
        assert SCOPE in granted(rotated), rotated
        assert rotated["refresh_token"] != tokens["refresh_token"]
        assert_one_branch(journey)
        call_mcp(journey, rotated["access_token"])


@pytest.mark.parametrize("client", CLIENTS, ids=[c.id for c in CLIENTS])
def test_real_client_stays_connected(world: World, client: RealClient) -> None:
    with connected(world, client) as (journey, tokens):
        clock = world.clock

        # The response of a refresh is lost; the client retries with the same token.
        lost = issued(journey.refresh(tokens["refresh_token"]))
        clock.advance(seconds=RETRY_DELAY.total_seconds())
        retried = issued(journey.refresh(tokens["refresh_token"]))
        assert SCOPE in granted(retried), retried
        assert_one_branch(journey)  # never two live branches
        del lost  # the client never saw it
        call_mcp(journey, retried["access_token"])

        # Two processes of one installation share a credential store and both hold
        # `retried`. Process A rotates it; process B presents the superseded token ~76 s later.
        held = retried["refresh_token"]
        process_a = issued(journey.refresh(held))
        clock.advance(seconds=SECOND_PROCESS_DELAY.total_seconds())
        process_b = issued(journey.refresh(held))
        assert SCOPE in granted(process_b), process_b
        assert_one_branch(journey)
        call_mcp(journey, process_b["access_token"])
        # ...and process A, ~76 s later again, presents the token it holds.
        clock.advance(seconds=SECOND_PROCESS_DELAY.total_seconds())
        again_a = issued(journey.refresh(process_a["refresh_token"]))
        assert SCOPE in granted(again_a), again_a
        assert_one_branch(journey)
        # Both end signed in: the latest token keeps working.
        latest = issued(journey.refresh(again_a["refresh_token"]))
        assert_one_branch(journey)
        call_mcp(journey, latest["access_token"])

        # Theft detection is not lost: a used token presented long after the window revokes
        # the whole family.
        clock.advance(seconds=THEFT_DELAY.total_seconds())
        stolen = journey.refresh(tokens["refresh_token"])
        assert stolen.status_code == 400, stolen.text
        assert stolen.json()["error"] == "invalid_grant"
        after = journey.refresh(latest["refresh_token"])
        assert after.status_code == 400, after.text
        assert after.json()["error"] == "invalid_grant"
        assert live_refresh_tokens(journey) == 0
