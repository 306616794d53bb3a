"""Browser tests: a real ``authgate serve --dev`` process, a client callback listener, and
Debian's Chromium driven by Playwright (never a browser Playwright downloads).

``scripts/test.sh`` installs Chromium and sets ``AUTHGATE_REQUIRE_BROWSER=1``, so there these
tests cannot skip; elsewhere they skip when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

CHROMIUM = os.environ.get("AUTHGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE = os.environ.get("AUTHGATE_REQUIRE_BROWSER") == "1"
PASSWORD = "browser-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    admin: str
    admin_password: str
    api_token: str
    client_id: str
    client_secret: str

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10
        )

    def create_user(self, prefix: str) -> str:
        username = f"{prefix}-{secrets.token_hex(3)}"
        with self.api() as api:
            made = api.post("/api/v2/users", json={"username": username, "password": PASSWORD})
        assert made.status_code == 201, made.text
        return username

    def exchange(
        self, code: str, verifier: str, redirect_uri: str, **client: str
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/oauth2/tokens",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            },
            auth=(
                client.get("client_id", self.client_id),
                client.get("secret", self.client_secret),
            ),
            timeout=10,
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("authgate-browser")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        AUTHGATE_DATA_DIR=str(data_dir),
        AUTHGATE_PORT=str(port),
        AUTHGATE_HOST="127.0.0.1",
        AUTHGATE_ISSUER=url,
    )
    authgate = Path(sys.executable).parent / "authgate"
    command = str(authgate) if authgate.exists() else shutil.which("authgate")
    assert command, "the authgate command is not installed"
    out_path, err_path = data_dir / "serve.out", data_dir / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [command, "serve", "--dev", "--json"], stdout=out, stderr=err, env=env, cwd=data_dir
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"authgate serve exited:\n{err_path.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"authgate serve did not start:\n{err_path.read_text()}")
            time.sleep(0.1)
        text = out_path.read_text()
        boot: dict[str, Any] = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
        yield Server(
            url,
            boot["username"],
            boot["password"],
            boot["api_token"],
            boot["client_id"],
            boot["client_secret"],
        )
    finally:
        process.terminate()  # this process only, by the handle that started it
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class Callback:
    """The client's redirect URI: a tiny HTTP listener that records what it receives."""

    port: int
    received: list[dict[str, str]] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last(self) -> dict[str, str]:
        assert self.received, "the callback received nothing"
        return self.received[-1]


@pytest.fixture(scope="session")
def callback() -> Iterator[Callback]:
    port = free_port()
    state = Callback(port)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/callback":
                state.received.append(dict(parse_qsl(parts.query)))
                body = "<!doctype html><title>Callback</title><h1>Callback received</h1>"
            else:
                body = state.pages.get(parts.path, "<!doctype html><title>ok</title><p>ok</p>")
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break tests that call ``asyncio.run`` in the same worker."""
    if not Path(CHROMIUM).exists():
        if REQUIRE:
            pytest.fail(f"AUTHGATE_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_url(client_id: str, redirect_uri: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(8),
        **extra,
    }
    return "/oauth2/authorize?" + urlencode(params)
