"""End to end: the official MCP Python SDK client against an MCP server protected by authgate.

Real processes on loopback: `authgate serve --dev` and `examples/mcp_server/server.py`. The
SDK client does everything an MCP client does — the 401 from the MCP server, RFC 9728
discovery, RFC 8414 metadata, authorization with PKCE and `resource` (RFC 8707), the code
exchange and a refresh — while the test plays the browser: it signs in and allows on
authgate's real pages over HTTP. Two protection modes are exercised: JWT access tokens
verified offline against the JWKS, and introspection (RFC 7662), where a revoked access token
is refused on the next call.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
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

from authgate.resource_server import metadata_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AUTHGATE = Path(sys.executable).with_name("authgate")
EXAMPLE = ROOT / "examples" / "mcp_server" / "server.py"
SCOPE = "mcp:tools"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AUTHGATE_*/MCP_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHGATE_", "MCP_"))}
    return {**env, **extra}


@dataclass
class Processes:
    """Every process this module started, stopped by PID when it ends."""

    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(
        self, args: list[str], env: dict[str, str], log_dir: Path, name: str
    ) -> subprocess.Popen[bytes]:
        stdout = (log_dir / f"{name}.out").open("wb")
        stderr = (log_dir / f"{name}.err").open("wb")
        self.logs += [stdout, stderr]
        proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, cwd=ROOT)
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        for log in self.logs:
            log.close()


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} during startup")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} did not start within {STARTUP_SECONDS} s")


@dataclass
class Authgate:
    issuer: str
    env: dict[str, str]
    bootstrap: dict[str, Any]
    user_id: str
    access_log: Path

    def requests(self, method: str, path: str) -> int:
        """How many such requests authgate has answered (its JSON access log)."""
        lines = self.access_log.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return sum(1 for e in entries if (e.get("method"), e.get("path")) == (method, path))

    def cli(self, *args: str) -> Any:
        result = subprocess.run(
            [str(AUTHGATE), *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert result.returncode == 0, f"authgate {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def authgate(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Authgate:
    """`authgate serve --dev` on a free port, with its bootstrap admin and API token."""
    workdir = tmp_path_factory.mktemp("authgate")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = clean_env(AUTHGATE_ISSUER=issuer, AUTHGATE_DATA_DIR=str(workdir / "data"))
    args = [str(AUTHGATE), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--json"]
    proc = processes.start(args, env, workdir, "authgate")
    wait_until(lambda: httpx.get(f"{issuer}/healthz").status_code == 200, proc, "authgate")
    bootstrap = json.loads((workdir / "authgate.out").read_text())
    me = httpx.get(
        f"{issuer}/api/v2/users/me",
        headers={"Authorization": f"Bearer {bootstrap['api_token']}"},
    )
    assert me.status_code == 200, me.text
    return Authgate(issuer, env, bootstrap, me.json()["id"], workdir / "authgate.err")


def require_resources_cli(authgate: Authgate) -> None:
    probe = subprocess.run(
        [str(AUTHGATE), "resources", "--help"], env=authgate.env, capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail("`authgate resources` does not exist yet: cannot register the MCP server")


@dataclass
class McpServer:
    url: str
    proc: subprocess.Popen[bytes]


def start_mcp_server(
    processes: Processes,
    authgate: Authgate,
    log_dir: Path,
    *,
    token_format: str,
    introspector: tuple[str, str] | None = None,
) -> McpServer:
    """Register a resource for a new example MCP server, then start the server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    register = ["resources", "create", "--identifier", url, "--name", f"Example MCP {port}"]
    register += ["--scope", f"{SCOPE}=Call the example tools", "--format", token_format]
    if introspector is not None:
        register += ["--introspector", introspector[0]]
    authgate.cli(*register)
    env = clean_env(
        AUTHGATE_ISSUER=authgate.issuer,
        MCP_RESOURCE=url,
        MCP_HOST="127.0.0.1",
        MCP_PORT=str(port),
        MCP_REQUIRED_SCOPES=SCOPE,
    )
    if introspector is not None:
        env |= {
            "AUTHGATE_INTROSPECTION_CLIENT_ID": introspector[0],
            "AUTHGATE_INTROSPECTION_CLIENT_SECRET": introspector[1],
            "MCP_INTROSPECTION_CACHE_SECONDS": "0",  # see a revocation on the very next call
        }
    proc = processes.start([sys.executable, str(EXAMPLE)], env, log_dir, f"mcp-{port}")
    prm = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
    wait_until(lambda: httpx.get(prm).status_code == 200, proc, "the example MCP server")
    return McpServer(url, proc)


class MemoryStorage:
    """The SDK's TokenStorage, pre-populated with the pre-registered client (no DCR)."""

    def __init__(self, client_info: OAuthClientInformationFull | None) -> None:
        self.client_info = client_info
        self.tokens: OAuthToken | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


class Browser:
    """The user at authgate's pages: signs in and allows, over plain HTTP."""

    def __init__(self, authgate: Authgate) -> None:
        self.authgate = authgate
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=30)
        self.authorize_urls: list[str] = []
        self.result: AuthorizationCodeResult | None = None
        self.armed = True

    async def redirect_handler(self, url: str) -> None:
        self.authorize_urls.append(url)
        if not self.armed:
            raise RuntimeError("the SDK asked the user to authorize again")
        page = await self.http.get(url)
        if page.status_code in (302, 303):
            login_url = self._absolute(page.headers["location"])
            assert urlsplit(login_url).path == "/login", login_url
            await self._sign_in(login_url)
            page = await self.http.get(url)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+)" id="consent-form">', page.text)
        assert action is not None, page.text
        form = dict(HIDDEN.findall(page.text))
        assert "csrf_token" in form
        decided = await self.http.post(
            self._absolute(html.unescape(action.group(1))), data={**form, "decision": "allow"}
        )
        assert decided.status_code == 302, decided.text
        query = parse_qs(urlsplit(decided.headers["location"]).query)
        assert "error" not in query, query
        self.result = AuthorizationCodeResult(
            code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0]
        )

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.result is not None
        result, self.result = self.result, None
        return result

    async def _sign_in(self, login_url: str) -> None:
        page = await self.http.get(login_url)
        assert page.status_code == 200, page.text
        form = dict(HIDDEN.findall(page.text))
        assert {"csrf_token", "return_to"} <= form.keys(), form
        bootstrap = self.authgate.bootstrap
        signed_in = await self.http.post(
            self._absolute("/login"),
            data={**form, "username": bootstrap["username"], "password": bootstrap["password"]},
        )
        assert signed_in.status_code in (302, 303), signed_in.text

    def _absolute(self, location: str) -> str:
        return location if "://" in location else f"{self.authgate.issuer}{location}"


@dataclass
class Session:
    """One MCP client: the SDK's OAuth provider, its storage, and what went over the wire."""

    provider: OAuthClientProvider
    storage: MemoryStorage
    browser: Browser
    statuses: list[tuple[str, str, int]] = field(default_factory=list)

    async def record(self, response: httpx2.Response) -> None:
        self.statuses.append(
            (response.request.method, str(response.request.url), response.status_code)
        )

    async def connect(self, url: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
        """One MCP connection (streamable HTTP through the SDK's OAuth provider)."""
        hooks = {"response": [self.record]}
        async with (
            httpx2.AsyncClient(auth=self.provider, timeout=30, event_hooks=hooks) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            return await body(client)

    async def refused(self, url: str) -> list[tuple[str, str, int]]:
        """The next connection fails: the MCP server answers 401 and the SDK has to ask the
        user to authorize again (which this test's user refuses; the SDK raises that from the
        transport's task group). Returns what went over the wire meanwhile."""
        self.browser.armed = False
        before = len(self.statuses)
        try:
            await self.connect(url, whoami)
        except Exception as exc:
            assert caused_by(exc, RuntimeError, "authorize again"), exc
        else:
            pytest.fail("the tool call succeeded without a valid token")
        seen = self.statuses[before:]
        assert [s for _, u, s in seen if u == url][:1] == [401], seen
        return seen


def new_session(authgate: Authgate, server: McpServer) -> Session:
    """Pre-register a public client with the CLI and hand its client_id to the SDK's storage."""
    redirect_uri = f"http://localhost:{free_port()}/callback"
    app = authgate.cli(
        "apps", "create", "--name", "E2E MCP client", "--redirect-uri", redirect_uri,
        "--public", "--scope", SCOPE,
    )  # fmt: skip
    metadata = OAuthClientMetadata(
        client_name="E2E MCP client",
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    info = OAuthClientInformationFull(
        client_id=app["id"],
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    storage = MemoryStorage(info)
    browser = Browser(authgate)
    provider = OAuthClientProvider(
        server_url=server.url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    return Session(provider, storage, browser)


def caused_by(exc: BaseException, kind: type[BaseException], text: str) -> bool:
    """Whether `exc`, an exception group member, a cause or a context is `kind` with `text`."""
    if isinstance(exc, kind) and text in str(exc):
        return True
    inner = [*getattr(exc, "exceptions", ()), exc.__cause__, exc.__context__]
    return any(caused_by(e, kind, text) for e in inner if e is not None)


async def whoami(client: Client) -> dict[str, Any]:
    result = await client.call_tool("whoami", {})
    assert not result.is_error, result
    assert result.structured_content is not None, result
    return dict(result.structured_content)


def jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


def revoke(authgate: Authgate, token: str, hint: str, client_id: str) -> None:
    """RFC 7009 §2.1, as the public client that holds the token."""
    response = httpx.post(
        f"{authgate.issuer}/oauth2/revoke",
        data={"token": token, "token_type_hint": hint, "client_id": client_id},
    )
    assert response.status_code == 200, response.text


def force_refresh(session: Session) -> None:
    """Make the access token the SDK holds count as expired, so its next request refreshes.

    The SDK reads tokens from its TokenStorage once and keeps the expiry in memory
    (`OAuthContext.token_expiry_time`): that is where the token has to expire.
    """
    session.provider.context.token_expiry_time = time.time() - 1


def check_first_authorization(session: Session, authgate: Authgate, server: McpServer) -> None:
    """The SDK found authgate from the MCP server's 401 and asked for PKCE + resource."""
    assert len(session.browser.authorize_urls) == 1
    url = urlsplit(session.browser.authorize_urls[0])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{authgate.issuer}/oauth2/authorize"
    query = parse_qs(url.query)
    assert query["resource"] == [server.url]
    assert query["code_challenge_method"] == ["S256"]
    # The SDK adds offline_access, which authgate's metadata now lists (issue 17): accepted, and
    # left out of the token, whose scope stays the resource's (checked below).
    assert query["scope"] == [f"{SCOPE} offline_access"]
    assert session.storage.client_info is not None
    assert query["client_id"] == [session.storage.client_info.client_id]
    seen = [(method, status) for method, _, status in session.statuses]
    assert ("POST", 401) in seen  # the challenge that started discovery
    urls = [u for _, u, _ in session.statuses]
    assert f"{server.url.removesuffix('/mcp')}/.well-known/oauth-protected-resource/mcp" in urls
    assert f"{authgate.issuer}/.well-known/oauth-authorization-server" in urls


def test_sdk_flow_with_jwt_access_tokens(
    authgate: Authgate, processes: Processes, tmp_path: Path
) -> None:
    require_resources_cli(authgate)
    server = start_mcp_server(processes, authgate, tmp_path, token_format="jwt")
    session = new_session(authgate, server)
    assert session.storage.client_info is not None
    client_id = session.storage.client_info.client_id
    expected = {"subject": authgate.user_id, "client_id": client_id, "scopes": [SCOPE]}

    async def scenario() -> None:
        async def first_connection(client: Client) -> OAuthToken:
            first = await whoami(client)
            assert first == {**expected, "resource": server.url}
            check_first_authorization(session, authgate, server)
            tokens = session.storage.tokens
            assert tokens is not None and tokens.refresh_token is not None
            assert jwt_header(tokens.access_token)["typ"] == "at+jwt"

            force_refresh(session)
            assert await whoami(client) == first
            refreshed = session.storage.tokens
            assert refreshed is not None and refreshed.refresh_token is not None
            assert refreshed.access_token != tokens.access_token
            assert refreshed.refresh_token != tokens.refresh_token  # rotated
            assert len(session.browser.authorize_urls) == 1  # a refresh, not a new authorization
            return refreshed

        jwks_before = authgate.requests("GET", "/.well-known/jwks.json")
        refreshed = await session.connect(server.url, first_connection)
        assert refreshed.refresh_token is not None
        # The MCP server verified the JWTs offline: it fetched the keys, and asked nothing else.
        assert authgate.requests("GET", "/.well-known/jwks.json") == jwks_before + 1

        # Revoke the refresh token: the next refresh fails, so the SDK has to send the user
        # through authorization again. (A JWT access token is verified offline: revoking it
        # takes effect at the resource server only when it expires.)
        revoke(authgate, refreshed.refresh_token, "refresh_token", client_id)
        force_refresh(session)
        await session.refused(server.url)
        assert len(session.browser.authorize_urls) == 2
        token_requests = [
            status for _, url, status in session.statuses if url.endswith("/oauth2/tokens")
        ]
        assert token_requests == [200, 200, 400]  # code, refresh, refused refresh
        replay = httpx.post(
            f"{authgate.issuer}/oauth2/tokens",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refreshed.refresh_token,
                "client_id": client_id,
            },
        )
        assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
        await session.browser.http.aclose()

    asyncio.run(scenario())


def test_sdk_flow_with_introspection_and_revocation(
    authgate: Authgate, processes: Processes, tmp_path: Path
) -> None:
    require_resources_cli(authgate)
    rs_app = authgate.cli(
        "apps", "create", "--name", "Example MCP server (introspection)",
        "--redirect-uri", "http://127.0.0.1:1/unused",
    )  # fmt: skip
    secret = authgate.cli("apps", "secrets", "create", rs_app["id"])["client_secret_full"]
    server = start_mcp_server(
        processes, authgate, tmp_path, token_format="opaque", introspector=(rs_app["id"], secret)
    )
    session = new_session(authgate, server)
    assert session.storage.client_info is not None
    client_id = session.storage.client_info.client_id

    async def scenario() -> None:
        async def first_connection(client: Client) -> OAuthToken:
            got = await whoami(client)
            assert got == {
                "subject": authgate.user_id,
                "client_id": client_id,
                "scopes": [SCOPE],
                "resource": server.url,
            }
            check_first_authorization(session, authgate, server)
            tokens = session.storage.tokens
            assert tokens is not None
            assert tokens.access_token.startswith("agat_")
            force_refresh(session)
            assert await whoami(client) == got
            access = session.storage.tokens
            assert access is not None and access.access_token != tokens.access_token
            return access

        introspected = authgate.requests("POST", "/oauth2/introspect")
        access = await session.connect(server.url, first_connection)
        assert authgate.requests("POST", "/oauth2/introspect") > introspected
        revoke(authgate, access.access_token, "access_token", client_id)

        # The MCP server asks authgate on every call (cache 0 s): the token is refused now.
        direct = httpx.post(
            server.url,
            headers={
                "Authorization": f"Bearer {access.access_token}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            },
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
        assert direct.status_code == 401
        challenge = direct.headers["www-authenticate"]
        assert challenge.startswith('Bearer error="invalid_token"'), challenge
        assert f'resource_metadata="{metadata_url(server.url)}"' in challenge

        # And through the SDK: its next request carries the revoked token and gets 401.
        await session.refused(server.url)
        assert len(session.browser.authorize_urls) == 2  # the SDK had to start over
        await session.browser.http.aclose()

    asyncio.run(scenario())


def test_sdk_registers_itself_dynamically(
    authgate: Authgate, processes: Processes, tmp_path: Path
) -> None:
    """An MCP client that knows nothing but the MCP server URL: it discovers authgate, registers
    with RFC 7591 dynamic registration, and completes the flow."""
    require_resources_cli(authgate)
    server = start_mcp_server(processes, authgate, tmp_path, token_format="jwt")
    redirect_uri = f"http://localhost:{free_port()}/callback"
    metadata = OAuthClientMetadata(
        client_name="Self-registering MCP client",
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    storage = MemoryStorage(None)
    browser = Browser(authgate)
    provider = OAuthClientProvider(
        server_url=server.url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    session = Session(provider, storage, browser)

    async def scenario() -> None:
        async def connection(client: Client) -> dict[str, Any]:
            return await whoami(client)

        result = await session.connect(server.url, connection)
        assert storage.client_info is not None
        client_id = storage.client_info.client_id
        assert result["subject"] == authgate.user_id
        assert result["client_id"] == client_id
        urls = [(method, url, status) for method, url, status in session.statuses]
        assert ("POST", f"{authgate.issuer}/oauth2/register", 201) in urls
        await browser.http.aclose()
        app = authgate.cli("apps", "show", client_id)
        assert app["dynamically_registered"] is True
        assert app["client_type"] == "public"
        assert app["redirect_uris"] == [redirect_uri]

    asyncio.run(scenario())
