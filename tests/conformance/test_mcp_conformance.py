"""The MCP conformance suite's authorization-server scenarios against a real `authgate serve`.

The suite is the public npm package `@modelcontextprotocol/conformance`, run on a Node release
that is itself an npm package (`node`); both are pinned in tests/conformance/package.json and
its lock file and installed with `npm ci` into tests/conformance/node_modules. Its
`authorization` command checks the RFC 8414 metadata, then runs an authorization code grant
with PKCE: it prints the authorization URL for a person to open and waits for the redirect on
its own callback server (http://127.0.0.1:<port>/callback). Here the test is that person: it
signs in and allows on authgate's real pages over HTTP and follows the redirect to the suite.

It runs once for each kind of client authgate serves: an operator-created public app, a client
registered dynamically (RFC 7591, as MCP clients register) and an operator-created
confidential app with a secret. Every check must pass, except those in EXPECTED_FAILURES,
which must still fail exactly as recorded (so that a fixed suite is noticed). The results
table is docs/conformance.md: AUTHGATE_CONFORMANCE_WRITE_DOCS=1 rewrites it, otherwise the
test fails when it is stale.

Without npm the test skips, or fails when AUTHGATE_REQUIRE_CONFORMANCE=1 (scripts/test.sh).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.test_mcp_sdk import (
    AUTHGATE,
    HIDDEN,
    ROOT,
    Processes,
    clean_env,
    free_port,
    wait_until,
)
from tests.npm import npm_ci

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
NODE = HERE / "node_modules" / ".bin" / "node"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance"
DOC = ROOT / "docs" / "conformance.md"
WRITE_DOCS = os.environ.get("AUTHGATE_CONFORMANCE_WRITE_DOCS") == "1"
RUN_SECONDS = 60.0

# The kinds of client, in the order of the table's columns.
CLIENTS = {
    "public": "Public app (operator-created, PKCE, no secret)",
    "registered": "Dynamically registered client (RFC 7591, `none`, RFC 8707 `resource`)",
    "confidential": "Confidential app (operator-created, with a secret)",
}
# Every check the suite reports for the `authorization` command, in the table's order.
CHECKS = (
    "authorization-server-metadata",
    "authorization-server-metadata-cimd",
    "authorization-code-grant",
)


@dataclass(frozen=True)
class Expected:
    """A check that fails because of the suite, not authgate: the status and the error it
    reports, and why."""

    status: str
    error: str
    reason: str


EXPECTED_FAILURES: dict[tuple[str, str], Expected] = {
    ("confidential", "authorization-code-grant"): Expected(
        "FAILURE",
        "Invalid status code: 401",
        "The suite picks the token endpoint auth method `none` whenever the metadata lists it "
        "in `token_endpoint_auth_methods_supported` — even when it was given a client secret — "
        "so it sends a confidential client's code without the secret, and authgate rightly "
        "answers `401 invalid_client` (RFC 6749 §3.2.1). authgate lists `none` because public "
        "clients use it.",
    ),
}


@dataclass
class Client:
    kind: str
    client_id: str
    secret: str | None
    port: int
    resource: str | None = None


@dataclass
class Authgate:
    issuer: str
    username: str
    password: str
    api_token: str
    access_log: Path

    def api(self, path: str, body: dict[str, Any]) -> Any:
        """An operator's POST to the management API (as the bootstrap admin)."""
        headers = {"Authorization": f"Bearer {self.api_token}"}
        answer = httpx.post(f"{self.issuer}/api/v2{path}", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def token_requests(self) -> list[dict[str, Any]]:
        """authgate's access-log lines (JSON) for its token endpoint, in order."""
        lines = self.access_log.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [
            e for e in entries if (e.get("method"), e.get("path")) == ("POST", "/oauth2/tokens")
        ]


def install_suite() -> None:
    """`npm ci` in tests/conformance when node_modules is missing or older than the lock."""
    npm_ci(HERE, "AUTHGATE_REQUIRE_CONFORMANCE")


@pytest.fixture(scope="module")
def authgate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authgate]:
    """`authgate serve --dev` (open dynamic registration) on a free port."""
    install_suite()
    workdir = tmp_path_factory.mktemp("authgate")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = clean_env(AUTHGATE_ISSUER=issuer, AUTHGATE_DATA_DIR=str(workdir / "data"))
    args = [str(AUTHGATE), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--json"]
    processes = Processes()
    try:
        proc = processes.start(args, env, workdir, "authgate")
        wait_until(lambda: httpx.get(f"{issuer}/healthz").status_code == 200, proc, "authgate")
        bootstrap = json.loads((workdir / "authgate.out").read_text())
        yield Authgate(
            issuer,
            bootstrap["username"],
            bootstrap["password"],
            bootstrap["api_token"],
            workdir / "authgate.err",
        )
    finally:
        processes.stop_all()


def make_client(authgate: Authgate, kind: str) -> Client:
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    name = f"Conformance {kind} client"
    if kind == "registered":
        registered = httpx.post(
            f"{authgate.issuer}/oauth2/register",
            json={
                "client_name": name,
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        )
        assert registered.status_code == 201, registered.text
        body = registered.json()
        assert body["token_endpoint_auth_method"] == "none"
        assert "client_secret" not in body
        # As MCP clients do, it asks for a token for one MCP server (RFC 8707).
        resource = f"http://127.0.0.1:{free_port()}/mcp"
        authgate.api("/resources", {"identifier": resource, "name": "Conformance MCP server"})
        return Client(kind, body["client_id"], None, port, resource)
    fields = {"name": name, "redirect_uris": [redirect_uri]}
    if kind == "public":
        app = authgate.api("/oauth2-provider/apps", {**fields, "client_type": "public"})
        assert app["client_type"] == "public", app
        return Client(kind, app["id"], None, port)
    app = authgate.api("/oauth2-provider/apps", {**fields, "client_type": "confidential"})
    secret = authgate.api(f"/oauth2-provider/apps/{app['id']}/secrets", {})
    return Client(kind, app["id"], secret["client_secret_full"], port)


class Browser:
    """The person the suite asks to open the authorization URL: signs in on authgate's pages,
    allows, and follows the redirect to the suite's callback server."""

    def __init__(self, authgate: Authgate, http: httpx.Client) -> None:
        self.authgate = authgate
        self.http = http

    def authorize(self, url: str, client: Client) -> None:
        page = self.http.get(url)
        if page.status_code in (302, 303):
            login = self._absolute(page.headers["location"])
            assert urlsplit(login).path == "/login", login
            self._sign_in(login)
            page = self.http.get(url)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+)" id="consent-form">', page.text)
        assert action is not None, page.text
        decided = self.http.post(
            self._absolute(html.unescape(action.group(1))),
            data={**dict(HIDDEN.findall(page.text)), "decision": "allow"},
        )
        assert decided.status_code == 302, decided.text
        callback = decided.headers["location"]
        parts = urlsplit(callback)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            f"http://127.0.0.1:{client.port}/callback"
        )
        assert parse_qs(parts.query)["iss"] == [self.authgate.issuer]
        # The suite's callback server answers once, then closes.
        assert httpx.get(callback, timeout=30).status_code == 200

    def _sign_in(self, login: str) -> None:
        page = self.http.get(login)
        assert page.status_code == 200, page.text
        form = dict(HIDDEN.findall(page.text))
        signed_in = self.http.post(
            self._absolute("/login"),
            data={**form, "username": self.authgate.username, "password": self.authgate.password},
        )
        assert signed_in.status_code in (302, 303), signed_in.text

    def _absolute(self, location: str) -> str:
        return location if "://" in location else f"{self.authgate.issuer}{location}"


def run_suite(authgate: Authgate, client: Client, browser: Browser, out: Path) -> list[Any]:
    """`conformance authorization` for `client`; returns the checks it saved."""
    args = [str(NODE), str(SUITE / "dist" / "index.js"), "authorization"]
    args += ["--url", authgate.issuer, "--client-id", client.client_id]
    args += ["--port", str(client.port), "--output-dir", str(out)]
    if client.secret is not None:
        args += ["--client-secret", client.secret]
    if client.resource is not None:
        args += ["--resource", client.resource]
    log = out.with_suffix(".log")
    with subprocess.Popen(
        args,
        cwd=HERE,
        env=clean_env(NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        seen: list[str] = []
        # The suite waits minutes for a callback that may never come: bound it by its PID.
        watchdog = threading.Timer(RUN_SECONDS, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                seen.append(line)
                if line.startswith(f"{authgate.issuer}/oauth2/authorize?"):
                    browser.authorize(line.strip(), client)
            proc.wait(timeout=RUN_SECONDS)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.write_text("".join(seen))
        assert proc.returncode in (0, 1), f"the suite ended with {proc.returncode}: {seen}"
    saved = sorted(out.glob("**/checks.json"))
    assert saved, "".join(seen)
    checks: list[Any] = []
    for path in saved:
        checks += json.loads(path.read_text())
    return checks


def outcome(check: dict[str, Any]) -> tuple[str, str]:
    return check["status"], check.get("errorMessage") or ""


def test_authorization_server_scenarios(authgate: Authgate, tmp_path: Path) -> None:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    ids: dict[str, str] = {}
    for kind in CLIENTS:
        client = make_client(authgate, kind)
        ids[kind] = client.client_id
        with httpx.Client(follow_redirects=False, timeout=30) as http:
            checks = run_suite(authgate, client, Browser(authgate, http), tmp_path / kind)
        by_id = {check["id"]: check for check in checks}
        assert sorted(by_id) == sorted(CHECKS), checks
        assert len(by_id) == len(checks), checks
        results[kind] = by_id
        grant = by_id["authorization-code-grant"]
        if grant["status"] == "SUCCESS":  # the suite's record of what went over the wire
            details = grant["details"]
            sent = parse_qs(urlsplit(details["authorizationRequest"]).query)
            assert sent["client_id"] == [client.client_id], details
            assert sent["code_challenge_method"] == ["S256"], details
            assert sent.get("resource") == ([client.resource] if client.resource else None)
            answer = parse_qs(urlsplit(details["authorizationResponseUrl"]).query)
            assert answer["iss"] == [authgate.issuer], details
            assert details["body"]["token_type"] == "Bearer", details

    failures = []
    for kind, by_id in results.items():
        for check_id, check in by_id.items():
            expected = EXPECTED_FAILURES.get((kind, check_id))
            want = ("SUCCESS", "") if expected is None else (expected.status, expected.error)
            if outcome(check) != want:
                failures.append(f"{kind} / {check_id}: want {want}, got {outcome(check)}")

    table = render(results)
    if WRITE_DOCS:
        DOC.write_text(table)
    assert not failures, "\n".join(failures)

    # What the expected failure rests on: authgate lists `none` for its public clients.
    metadata = results["confidential"]["authorization-server-metadata"]["details"]["body"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"], metadata

    # authgate's side: one token request per client, refused only where the suite is wrong
    # (the confidential client's code, sent without its secret).
    answered = [(e.get("client_id"), e["status"]) for e in authgate.token_requests()]
    refused = {
        kind for kind, check_id in EXPECTED_FAILURES if check_id == "authorization-code-grant"
    }
    assert answered == [(ids[k], 401 if k in refused else 200) for k in CLIENTS], answered
    assert DOC.read_text() == table, (
        "docs/conformance.md is stale: run this test with AUTHGATE_CONFORMANCE_WRITE_DOCS=1"
    )


def render(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """docs/conformance.md: the results table and the expected failures."""
    package = json.loads((SUITE / "package.json").read_text())
    node = json.loads((HERE / "node_modules" / "node" / "package.json").read_text())
    marks = {"SUCCESS": "pass", "FAILURE": "**fail**", "WARNING": "warning", "SKIPPED": "skipped"}
    lines = [
        "# MCP conformance: authorization server",
        "",
        "<!-- Generated by tests/conformance/test_mcp_conformance.py with",
        "     AUTHGATE_CONFORMANCE_WRITE_DOCS=1; the test fails when this file is stale. -->",
        "",
        f"The authorization-server scenarios of the MCP conformance suite "
        f"(`{package['name']}` {package['version']}, on Node {node['version']}) run in CI "
        "against a real `authgate serve --dev`, once for each kind of client. For the "
        "authorization code grant the test signs in and allows on authgate's pages, as the "
        "person the suite asks to open the authorization URL would.",
        "",
        "| Check | " + " | ".join(CLIENTS.values()) + " |",
        "|---|" + "---|" * len(CLIENTS),
    ]
    for check_id in CHECKS:
        cells = []
        for kind in CLIENTS:
            status = results[kind][check_id]["status"]
            mark = marks.get(status, status)
            cells.append(f"{mark} (expected)" if (kind, check_id) in EXPECTED_FAILURES else mark)
        lines.append(f"| `{check_id}` | " + " | ".join(cells) + " |")
    lines += ["", "## Expected failures", ""]
    if not EXPECTED_FAILURES:
        lines.append("None.")
    for (kind, check_id), expected in EXPECTED_FAILURES.items():
        lines.append(
            f"- `{check_id}`, {CLIENTS[kind][0].lower()}{CLIENTS[kind][1:]}: "
            f"the suite reports `{expected.error}`. {expected.reason}"
        )
    lines += [
        "",
        "## Running it",
        "",
        "`scripts/test.sh` runs it with the rest of the suite. To run it alone (npm installs "
        "the pinned suite and Node into `tests/conformance/node_modules` on first use):",
        "",
        "```sh",
        "python -m pytest tests/conformance",
        "AUTHGATE_CONFORMANCE_WRITE_DOCS=1 python -m pytest tests/conformance  # rewrite this file",
        "```",
        "",
    ]
    return "\n".join(lines)
