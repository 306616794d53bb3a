"""Sign-in through an upstream OpenID Provider in headless Chromium, ending in an MCP client's
token: every part real and in its own process.

- authgate: ``authgate serve --dev`` with two providers from ``AUTHGATE_UPSTREAM_PROVIDERS``
  (node-oidc-provider twice, two issuers, over HTTPS with the tests' throwaway CA, which
  authgate trusts through ``AUTHGATE_FETCH_CA_BUNDLE``; 127.0.0.1 allowed for its fetcher);
- the example MCP server (``examples/mcp_server/server.py``) as the protected resource;
- the official MCP Python SDK's OAuth client (``OAuthClientProvider``) as a pre-registered
  public client: the MCP server's 401, RFC 9728 and RFC 8414 discovery, PKCE and ``resource``,
  the code exchange; it runs on its own thread and hands its authorization URL to the browser;
- Chromium plays the person: authgate's sign-in page, the provider's button, the provider's
  own login form, authgate's consent page, Allow; the client's redirect URI is a loopback
  listener whose code goes back to the SDK.

With ``AUTHGATE_SCREENSHOTS=1`` the test also writes the sign-in page (two provider buttons
and the password form) and the console's *Identity providers* page into docs/screenshots/
(as docs/upstream-sign-in.md shows them); without it they go to the test's tmp dir only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from playwright.sync_api import expect

from authgate import storage
from authgate.core.models import AuditQuery
from tests.browser.conftest import Callback
from tests.browser.test_pages_in_chromium import sign_in
from tests.e2e.test_mcp_sdk import (
    EXAMPLE,
    SCOPE,
    MemoryStorage,
    Processes,
    clean_env,
    free_port,
    wait_until,
)
from tests.fetch.server import write_certificates
from tests.procs import AUTHGATE, ROOT, run_cli
from tests.upstream import provider

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT = 60.0


@dataclass
class Stack:
    issuer: str
    data_dir: Path
    env: dict[str, str]
    bootstrap: dict[str, Any]
    corp: provider.OpenIdProvider
    partner: provider.OpenIdProvider
    mcp_url: str

    def cli(self, *args: str) -> Any:
        return run_cli(self.env, *args)

    def store(self) -> storage.SqlStore:
        return storage.open_store(f"sqlite:///{self.data_dir / 'authgate.db'}")


def providers_json(corp: provider.OpenIdProvider, partner: provider.OpenIdProvider) -> str:
    common = {"client_id": provider.CLIENT_ID, "client_secret": provider.CLIENT_SECRET}
    return json.dumps(
        [
            common
            | {
                "id": "corp",
                "display_name": "Corp SSO",
                "issuer": corp.issuer,
                "scopes": "openid email profile groups",
                "jit_create": True,
                "allowed_domains": ["example.com"],
                "required_claim": "groups",
                "required_values": ["staff"],
            },
            common
            | {
                "id": "partner",
                "display_name": "Partner IdP",
                "issuer": partner.issuer,
                "link_by_verified_email": True,
            },
        ]
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("upstream-browser")
    ca, cert, key = write_certificates(workdir)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    callbacks = [f"{issuer}/login/upstream/{p}/callback" for p in ("corp", "partner")]
    with ExitStack() as stack:
        corp = stack.enter_context(provider.running(ca, cert, key, callbacks))
        partner = stack.enter_context(provider.running(ca, cert, key, callbacks))
        processes = Processes()
        stack.callback(processes.stop_all)
        data_dir = workdir / "data"
        env = clean_env(
            AUTHGATE_ISSUER=issuer,
            AUTHGATE_DATA_DIR=str(data_dir),
            AUTHGATE_FETCH_ALLOW_HOSTS="127.0.0.1",
            AUTHGATE_FETCH_CA_BUNDLE=str(ca),
            AUTHGATE_FETCH_TIMEOUT_SECONDS="5",
            AUTHGATE_UPSTREAM_PROVIDERS=providers_json(corp, partner),
        )
        args = [str(AUTHGATE), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)]
        proc = processes.start([*args, "--json"], env, workdir, "authgate")
        wait_until(lambda: httpx.get(f"{issuer}/healthz").status_code == 200, proc, "authgate")
        bootstrap = json.loads((workdir / "authgate.out").read_text())
        mcp_port = free_port()
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        built = Stack(issuer, data_dir, env, bootstrap, corp, partner, mcp_url)
        built.cli(
            "resources", "create", "--identifier", mcp_url, "--name", "Team tools",
            "--scope", f"{SCOPE}=Call the team's tools", "--format", "jwt",
        )  # fmt: skip
        mcp_env = clean_env(
            AUTHGATE_ISSUER=issuer,
            MCP_RESOURCE=mcp_url,
            MCP_HOST="127.0.0.1",
            MCP_PORT=str(mcp_port),
            MCP_REQUIRED_SCOPES=SCOPE,
        )
        mcp = processes.start([sys.executable, str(EXAMPLE)], mcp_env, workdir, "mcp")
        prm = f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp"
        wait_until(lambda: httpx.get(prm).status_code == 200, mcp, "the example MCP server")
        yield built


class Hand:
    """Between the SDK's thread and the browser's: the URL the SDK wants the person to open,
    and the code the client's redirect URI received."""

    def __init__(self) -> None:
        self.urls: queue.Queue[str] = queue.Queue()
        self.codes: queue.Queue[AuthorizationCodeResult] = queue.Queue()

    async def redirect_handler(self, url: str) -> None:
        self.urls.put(url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        return await asyncio.to_thread(self.codes.get, True, WAIT)


@dataclass
class McpRun:
    """The MCP client on its own thread (Playwright's sync API holds this thread's loop)."""

    storage: MemoryStorage
    thread: threading.Thread
    outcome: dict[str, Any]

    def result(self) -> dict[str, Any]:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the MCP client never finished"
        if "error" in self.outcome:
            raise self.outcome["error"]
        whoami: dict[str, Any] = self.outcome["whoami"]
        return whoami


def start_mcp_client(stack: Stack, redirect_uri: str, hand: Hand) -> McpRun:
    app = stack.cli(
        "apps", "create", "--name", "Team MCP client", "--redirect-uri", redirect_uri,
        "--public", "--scope", SCOPE,
    )  # fmt: skip
    info = OAuthClientInformationFull(
        client_id=app["id"],
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    tokens = MemoryStorage(info)
    oauth = OAuthClientProvider(
        server_url=stack.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Team MCP client",
            redirect_uris=[redirect_uri],
            token_endpoint_auth_method="none",
        ),
        storage=tokens,
        redirect_handler=hand.redirect_handler,
        callback_handler=hand.callback_handler,
    )
    outcome: dict[str, Any] = {}

    async def call() -> None:
        async with (
            httpx2.AsyncClient(auth=oauth, timeout=WAIT) as http,
            Client(streamable_http_client(stack.mcp_url, http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
            assert not result.is_error, result
            outcome["whoami"] = dict(result.structured_content or {})

    def run() -> None:
        try:
            asyncio.run(call())
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return McpRun(tokens, thread, outcome)


def claims_of(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


def shot(page: Any, tmp_path: Path, name: str, *, full_page: bool = True) -> None:
    """Into the test's tmp dir, and into docs/screenshots/ with AUTHGATE_SCREENSHOTS=1 (the
    viewport only when ``full_page`` is false, to keep the image small)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=full_page)
    if os.environ.get("AUTHGATE_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def test_mcp_client_token_through_upstream_sign_in(
    browser: Any, stack: Stack, callback: Callback, tmp_path: Path
) -> None:
    stack.corp.set_account(
        "ada-7",
        {
            "email": "ada@example.com",
            "email_verified": True,
            "name": "Ada Lovelace",
            "preferred_username": "ada",
            "groups": ["staff", "ops"],
        },
    )
    hand = Hand()
    run = start_mcp_client(stack, callback.redirect_uri, hand)
    authorize_url = hand.urls.get(timeout=WAIT)
    query = parse_qs(urlsplit(authorize_url).query)
    assert authorize_url.startswith(f"{stack.issuer}/oauth2/authorize?")
    assert query["resource"] == [stack.mcp_url] and query["code_challenge_method"] == ["S256"]

    context = browser.new_context(
        ignore_https_errors=True,  # the providers' throwaway CA; authgate itself checks it
        viewport={"width": 640, "height": 720},
    )
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(authorize_url)
        assert urlsplit(page.url).path == "/login"
        buttons = page.locator("form.upstream-sign-in button")
        expect(buttons).to_have_text(["Sign in with Corp SSO", "Sign in with Partner IdP"])
        expect(page.locator("#login-form #username")).to_be_visible()
        shot(page, tmp_path, "sign-in-providers")

        page.click("#upstream-corp-button")
        page.wait_for_url(re.compile(re.escape(stack.corp.issuer) + "/interaction/"))
        page.fill("#account", "ada-7")
        page.click("#idp-sign-in")
        page.wait_for_selector("#consent-form")
        assert page.inner_text("#app-name") == "Team MCP client"
        assert page.inner_text("#username") == "ada"
        page.click("#allow")
        page.wait_for_url(re.compile(re.escape(callback.redirect_uri) + r"\?"))
        got = callback.last()
        assert got["iss"] == stack.issuer
        hand.codes.put(
            AuthorizationCodeResult(code=got["code"], state=got["state"], iss=got["iss"])
        )
        whoami = run.result()
    finally:
        context.close()

    store = stack.store()
    identity = store.get_upstream_identity("corp", "ada-7")
    assert identity is not None
    user = store.get_user(identity.user_id)
    assert user is not None
    assert (user.username, user.email, user.email_verified) == ("ada", "ada@example.com", True)
    assert not user.is_admin and user.password_hash is None
    # The MCP server saw the linked user, this client, the scope, itself as the audience.
    client_id = run.storage.client_info.client_id if run.storage.client_info else None
    assert whoami == {
        "subject": user.id,
        "client_id": client_id,
        "scopes": [SCOPE],
        "resource": stack.mcp_url,
    }
    token: OAuthToken | None = run.storage.tokens
    assert token is not None and token.refresh_token
    claims = claims_of(token.access_token)
    assert (claims["aud"], claims["sub"], claims["iss"]) == (stack.mcp_url, user.id, stack.issuer)
    assert claims["client_id"] == client_id and claims["scope"] == SCOPE

    def actions(target: str) -> list[str]:
        found, _ = store.list_audit(AuditQuery(target_id=target, limit=100))
        return sorted(e.action for e in found)

    assert {"user.created", "upstream_identity.linked", "upstream.logged_in"} <= set(
        actions(user.id)
    )
    linked, _ = store.list_audit(AuditQuery(action="upstream_identity.linked"))
    assert [(e.details["provider"], e.details["method"]) for e in linked] == [("corp", "created")]
    logged_in, _ = store.list_audit(AuditQuery(action="upstream.logged_in"))
    assert [e.details["idp"] for e in logged_in] == [stack.corp.issuer]
    refused, _ = store.list_audit(AuditQuery(action="upstream.sign_in_refused"))
    assert list(refused) == []


def test_the_console_lists_the_providers(browser: Any, stack: Stack, tmp_path: Path) -> None:
    context = browser.new_context(base_url=stack.issuer, viewport={"width": 1000, "height": 560})
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto("/admin/upstream")
        sign_in(page, stack.bootstrap["username"], stack.bootstrap["password"])
        page.wait_for_selector("#providers")
        rows = page.locator("#providers tbody tr")
        expect(rows).to_have_count(2)
        corp = page.inner_text("#provider-corp")
        assert "Corp SSO" in corp and stack.corp.issuer in corp and "enabled" in corp
        assert "creates users (example.com)" in corp and "requires groups: staff" in corp
        assert "links by verified email" in page.inner_text("#provider-partner")
        assert provider.CLIENT_SECRET not in page.content()
        shot(page, tmp_path, "admin-identity-providers", full_page=False)
    finally:
        context.close()
