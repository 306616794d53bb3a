"""node-oidc-provider (tests/upstream/provider/server.mjs) as a real upstream OpenID Provider:
installed with `npm ci` from the committed lock file (Node itself is an npm package there, as
in tests/conformance), started on a free loopback port over HTTPS with the tests' throwaway CA,
stopped by PID. ``drive`` plays the person at the provider: it follows the provider's
redirects and answers the login prompt with the account the test names."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.e2e.test_mcp_sdk import free_port, wait_until
from tests.npm import npm_ci

HERE = Path(__file__).parent / "provider"
NODE = HERE / "node_modules" / ".bin" / "node"
CLIENT_ID = "authgate"
CLIENT_SECRET = "upstream-client-secret-for-tests-only"


def install() -> None:
    """`npm ci` in tests/upstream/provider when node_modules is missing or older than the lock."""
    npm_ci(HERE, "AUTHGATE_REQUIRE_UPSTREAM_PROVIDER")


@dataclass
class OpenIdProvider:
    issuer: str
    ca: Path

    def http(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=self.ca), timeout=10)

    def set_account(self, account_id: str, claims: dict[str, Any]) -> None:
        with self.http() as http:
            resp = http.put(f"{self.issuer}/test/accounts/{account_id}", content=json.dumps(claims))
            assert resp.status_code == 200, resp.text

    def set_client(
        self,
        client_id: str,
        jwks: dict[str, Any],
        redirect_uris: list[str],
        *,
        strict_audience: bool = False,
    ) -> None:
        """Register (or replace) a client that authenticates with private_key_jwt by the keys
        of ``jwks`` (authgate's, as its JWKS URL serves them); ``strict_audience``: only the
        token endpoint URL as ``aud``, and an ``x5t`` header, as Entra ID wants."""
        body = {"jwks": jwks, "redirect_uris": redirect_uris, "strict_audience": strict_audience}
        with self.http() as http:
            resp = http.put(f"{self.issuer}/test/clients/{client_id}", content=json.dumps(body))
            assert resp.status_code == 200, resp.text

    def drive(self, authorization_url: str, account: str, back_to: str) -> str:
        """Follow the provider from its authorization endpoint until it redirects to
        ``back_to`` (authgate's callback), signing ``account`` in; returns that URL."""
        url = authorization_url
        with self.http() as http:
            for _ in range(12):
                if url.startswith(back_to):
                    return url
                if "/interaction/" in url:
                    url += ("&" if "?" in url else "?") + f"account={account}"
                resp = http.get(url, follow_redirects=False)
                assert resp.status_code in (302, 303), (url, resp.status_code, resp.text)
                url = urljoin(url, resp.headers["location"])
        raise AssertionError(f"the provider never sent the browser back: {url}")


@contextmanager
def running(ca: Path, cert: Path, key: Path, redirect_uris: list[str]) -> Iterator[OpenIdProvider]:
    install()
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "ISSUER": issuer,
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": " ".join(redirect_uris),
    }
    log = (cert.parent / f"oidc-provider-{port}.log").open("wb")
    proc = subprocess.Popen(
        [str(NODE), str(HERE / "server.mjs")], env=env, stdout=log, stderr=log, cwd=HERE
    )
    provider = OpenIdProvider(issuer, ca)
    try:

        def ready() -> bool:
            with provider.http() as http:
                url = f"{issuer}/.well-known/openid-configuration"
                return http.get(url).status_code == 200

        wait_until(ready, proc, "oidc-provider")
        yield provider
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
