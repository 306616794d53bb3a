"""A stand-in for GitHub, for the tests only: GitHub cannot be reached from the machines that
run them. It serves exactly the endpoints authgate uses, as GitHub's documentation describes
them, and nothing more; it runs *next to* the real OpenID Provider (provider.py,
node-oidc-provider), never instead of it.

- "Authorizing OAuth apps", web application flow: ``GET /login/oauth/authorize`` shows the
  person a page; the test answers it (``authorize``: allow as an account, or deny), and the
  stand-in redirects to the registered callback URL with ``code`` and ``state``, or with
  ``error=access_denied``. ``POST /login/oauth/access_token`` checks the client, the code
  (single use), ``redirect_uri`` and PKCE S256 ("PKCE support for OAuth and GitHub App
  authentication"), and answers as GitHub does: with ``Accept: application/json`` JSON, else
  form-encoded; a refusal is HTTP 200 with an ``error`` member (``bad_verification_code``,
  ``incorrect_client_credentials``, ``redirect_uri_mismatch``).
- The REST API at ``/api/v3`` (GitHub Enterprise Server's path; github.com's is
  api.github.com): "Get the authenticated user" ``GET /user``, "List email addresses for the
  authenticated user" ``GET /user/emails`` (scope ``user:email``), "Get an organization
  membership for the authenticated user" ``GET /user/memberships/orgs/{org}`` and "Get team
  membership for a user" ``GET /orgs/{org}/teams/{team_slug}/memberships/{username}`` (scope
  ``read:org``; 404 when there is none). Every API request needs ``Authorization: Bearer``
  with a token it issued (else 401 "Bad credentials") and a ``User-Agent`` (else 403, as
  "Getting started with the REST API" says).

HTTPS on 127.0.0.1 with the tests' throwaway CA (tests/fetch/server.py); every request is
recorded so a test can check what authgate sent. Knobs make it misbehave: ``token_answer``
(the token endpoint's answer), ``api_status`` (every API answer's status), ``api_stall``
(seconds before the API answers), ``grant_scope`` (what the person grants)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urljoin

import httpx

from tests.fetch.server import _QuietServer

CLIENT_ID = "Iv1.standin0authgate"
CLIENT_SECRET = "github-standin-client-secret-for-tests-only"
#: (status, content type, body, extra headers)
Reply = tuple[int, str, str, dict[str, str]]
_FORM = re.compile(r'<form method="post" action="([^"]+)">')


def _credentials(form: dict[str, str], headers: dict[str, str]) -> tuple[str, str] | None:
    """The client's id and secret: from HTTP Basic (RFC 6749 §2.3.1, each part form-encoded),
    else from the form; sent both ways at once is no credential (§2.3: one method only)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("Basic "):
        return form.get("client_id", ""), form.get("client_secret", "")
    if "client_secret" in form:
        return None
    try:
        decoded = base64.b64decode(auth.removeprefix("Basic "), validate=True).decode()
    except ValueError:
        return None
    client_id, _, secret = decoded.partition(":")
    if form.get("client_id", client_id) != unquote(client_id):
        return None
    return unquote(client_id), unquote(secret)


@dataclass
class Account:
    """A GitHub user: ``orgs`` maps an organisation to the membership's state ("active" or
    "pending"); ``teams`` holds "org/team-slug"."""

    id: int
    login: str
    name: str | None = None
    emails: list[dict[str, Any]] = field(default_factory=list)
    orgs: dict[str, str] = field(default_factory=dict)
    teams: set[str] = field(default_factory=set)

    def public(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": f"U_{self.id}",
            "type": "User",
            "name": self.name,
            "email": next((e["email"] for e in self.emails if e.get("visibility")), None),
        }


def email(address: str, *, verified: bool = True, primary: bool = False) -> dict[str, Any]:
    return {
        "email": address,
        "verified": verified,
        "primary": primary,
        "visibility": "public" if primary else None,
    }


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class GitHub:
    base: str
    ca: Path
    redirect_uri: str = ""  # the OAuth app's "Authorization callback URL"
    accounts: dict[int, Account] = field(default_factory=dict)
    token_answer: dict[str, Any] | None = None
    api_status: int | None = None
    api_stall: float = 0.0
    grant_scope: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    _pending: dict[str, dict[str, str]] = field(default_factory=dict)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tokens: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, account: Account) -> Account:
        self.accounts[account.id] = account
        return account

    def api_calls(self) -> list[str]:
        return [r.path for r in self.requests if r.path.startswith("/api/v3/")]

    # -- the person at GitHub (driven by the test) -----------------------------------------

    def authorize(self, url: str, account_id: int | None, *, back_to: str) -> str:
        """Open GitHub's authorization page at ``url`` and answer it: allow as
        ``account_id``, or deny when None. Returns the URL GitHub sends the browser to."""
        with httpx.Client(verify=ssl.create_default_context(cafile=self.ca), timeout=10) as http:
            page = http.get(url)
            assert page.status_code == 200, page.text
            action = _FORM.search(page.text)
            assert action is not None, page.text
            decision = {"decision": "deny"} if account_id is None else {"account": account_id}
            resp = http.post(urljoin(url, action.group(1)), data=decision)
            assert resp.status_code == 302, resp.text
            location = resp.headers["location"]
        assert location.startswith(back_to), location
        return location

    # -- the endpoints -----------------------------------------------------------------------

    def answer(
        self, method: str, target: str, form: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        path, _, query = target.partition("?")
        with self._lock:
            self.requests.append(Recorded(method, path, headers, form))
        if path == "/login/oauth/authorize" and method == "GET":
            return self._authorize_page({k: v[0] for k, v in parse_qs(query).items()})
        if path.startswith("/login/oauth/authorize/") and method == "POST":
            return self._decide(path.rsplit("/", 1)[1], form)
        if path == "/login/oauth/access_token" and method == "POST":
            body = self.token_answer or self._token(form, headers)
            if "json" in headers.get("accept", ""):
                return 200, "application/json", json.dumps(body), {}
            return 200, "application/x-www-form-urlencoded", urlencode(body), {}
        if path.startswith("/api/v3/") and method == "GET":
            status, body = self._api(path.removeprefix("/api/v3"), headers)
            return status, "application/json; charset=utf-8", json.dumps(body), {}
        return 404, "application/json", json.dumps({"message": "Not Found"}), {}

    def _authorize_page(self, query: dict[str, str]) -> Reply:
        if query.get("client_id") != CLIENT_ID:
            return 404, "text/html", "<p>Not Found</p>", {}
        if query.get("redirect_uri", self.redirect_uri) != self.redirect_uri:
            return 400, "text/html", "<p>The redirect_uri is not associated with this app.</p>", {}
        pending = secrets.token_urlsafe(8)
        self._pending[pending] = query
        page = (
            f"<h1>Authorize {CLIENT_ID}</h1><p>Scopes: {query.get('scope', '')}</p>"
            f'<form method="post" action="/login/oauth/authorize/{pending}">'
            '<button name="decision" value="allow">Authorize</button></form>'
        )
        return 200, "text/html", page, {}

    def _decide(self, pending: str, form: dict[str, str]) -> Reply:
        query = self._pending.pop(pending, None)
        if query is None:
            return 404, "text/html", "<p>Not Found</p>", {}
        state = {"state": query["state"]} if "state" in query else {}
        if form.get("decision") == "deny":
            refused = {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
                "error_uri": "/apps/troubleshooting-authorization-request-errors#access-denied",
                **state,
            }
            return 302, "text/html", "", {"Location": f"{self.redirect_uri}?{urlencode(refused)}"}
        code = secrets.token_hex(10)
        asked = set(query.get("scope", "").replace(",", " ").split())
        self._codes[code] = {
            "account": int(form["account"]),
            "challenge": query.get("code_challenge"),
            "method": query.get("code_challenge_method"),
            "redirect_uri": query.get("redirect_uri", self.redirect_uri),
            "scope": set((self.grant_scope or " ".join(asked)).split()),
        }
        back = urlencode({"code": code, **state})
        return 302, "text/html", "", {"Location": f"{self.redirect_uri}?{back}"}

    def _token(self, form: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        if _credentials(form, headers) != (CLIENT_ID, CLIENT_SECRET):
            return {"error": "incorrect_client_credentials"}
        issued = self._codes.pop(form.get("code", ""), None)  # single use
        if issued is None:
            return {"error": "bad_verification_code"}
        if form.get("redirect_uri", issued["redirect_uri"]) != issued["redirect_uri"]:
            return {"error": "redirect_uri_mismatch"}
        if issued["challenge"] is not None:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            s256 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if issued["method"] != "S256" or s256 != issued["challenge"]:
                return {"error": "bad_verification_code"}
        token = "gho_" + secrets.token_hex(18)
        self._tokens[token] = (issued["account"], issued["scope"])
        return {
            "access_token": token,
            "token_type": "bearer",
            "scope": ",".join(sorted(issued["scope"])),
        }

    def _api(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        if self.api_stall:
            time.sleep(self.api_stall)
        if not headers.get("user-agent"):
            return 403, {"message": "Request forbidden by administrative rules."}
        auth = headers.get("authorization", "")
        held = (
            self._tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        )
        if held is None:
            return 401, {"message": "Bad credentials"}
        if self.api_status is not None:
            return self.api_status, {"message": "Server Error"}
        account, scope = self.accounts[held[0]], held[1]
        if path == "/user":
            return 200, account.public()
        if path == "/user/emails":
            return (200, account.emails) if scope & {"user", "user:email"} else (404, {})
        if not scope & {"read:org", "write:org", "admin:org"}:
            return 403, {"message": "You need at least read:org scope"}
        return self._membership(account, path)

    def _membership(self, account: Account, path: str) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["user", "memberships", "orgs"] and len(parts) == 4:
            orgs = {o.lower(): (o, s) for o, s in account.orgs.items()}
            if parts[3].lower() in orgs:
                org, state = orgs[parts[3].lower()]
                return 200, {"state": state, "role": "member", "organization": {"login": org}}
        if len(parts) == 6 and parts[0] == "orgs" and parts[2] == "teams":
            member = self.accounts_by_login().get(parts[5].lower())
            if member is not None and f"{parts[1]}/{parts[3]}".lower() in {
                t.lower() for t in member.teams
            }:
                return 200, {"state": "active", "role": "member", "url": self.base + path}
        return 404, {"message": "Not Found"}

    def accounts_by_login(self) -> dict[str, Account]:
        return {a.login.lower(): a for a in self.accounts.values()}


@contextmanager
def running(ca: Path, cert: Path, key: Path) -> Iterator[GitHub]:
    github = GitHub(base="", ca=ca)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, method: str, form: dict[str, str]) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, kind, body, extra = github.answer(method, self.path, form, headers)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET", {})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            self._reply("POST", {k: v[0] for k, v in parse_qs(raw).items()})

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    github.base = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield github
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
