#!/usr/bin/env python3
"""A local OAuth client callback for test-manual-flow.sh (Python standard library only).

It listens on http://localhost:PORT/callback, checks the authorization response (an ``error``
is shown; a missing ``code`` or a ``state`` that differs from the one the flow started with is
rejected), exchanges the code at the token endpoint with client_secret_post, code_verifier and
redirect_uri, prints the token response as JSON on stdout and a sample API call on stderr, and
exits: 0 when it got tokens, 1 otherwise. ``--keep-running`` serves further callbacks instead.

The client secret and the code verifier come from the environment (CLIENT_SECRET,
CODE_VERIFIER), not from arguments, so they do not show in the process list.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem}}
pre{{background:#f4f4f4;padding:1rem;overflow-x:auto}} .error{{color:#b00020}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


class Config(argparse.Namespace):
    port: int
    host: str
    token_url: str
    redirect_uri: str
    state: str
    authorize_url: str
    api_url: str
    keep_running: bool
    timeout: float
    client_id: str
    client_secret: str
    code_verifier: str


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("CALLBACK_PORT", "9876")))
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--token-url", required=True)
    parser.add_argument(
        "--redirect-uri", default="", help="Default: http://localhost:PORT/callback"
    )
    parser.add_argument("--state", required=True, help="The state the flow started with.")
    parser.add_argument("--authorize-url", default="", help="Shown on the waiting page.")
    parser.add_argument("--api-url", default="", help="authgate's URL, for the sample API call.")
    parser.add_argument("--keep-running", action="store_true", help="Serve further callbacks.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after N s (0: never).")
    config = parser.parse_args(argv, namespace=Config())
    config.redirect_uri = config.redirect_uri or f"http://localhost:{config.port}/callback"
    missing = [n for n in ("CLIENT_ID", "CLIENT_SECRET", "CODE_VERIFIER") if not os.environ.get(n)]
    if missing:
        parser.error(f"set {', '.join(missing)} in the environment")
    config.client_id = os.environ["CLIENT_ID"]
    config.client_secret = os.environ["CLIENT_SECRET"]
    config.code_verifier = os.environ["CODE_VERIFIER"]
    return config


def exchange_code(config: Config, code: str) -> tuple[int, dict[str, Any] | None, str]:
    """POST the authorization_code grant (client_secret_post); returns status, JSON, raw body."""
    form = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": config.redirect_uri,
            "code_verifier": config.code_verifier,
            "client_id": config.client_id,
            "client_secret": config.client_secret,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the token URL is the operator's own server
        config.token_url,
        data=form,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, raw = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, None, f"cannot reach {config.token_url}: {exc}"
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return status, body if isinstance(body, dict) else None, raw


class CallbackServer(HTTPServer):
    config: Config
    outcome: int | None  # exit status once a callback was handled


class Handler(BaseHTTPRequestHandler):
    server: CallbackServer

    def log_message(self, format: str, *args: Any) -> None:
        # Only the callback is worth a line; the query (code, state) is not logged.
        if self.path.startswith("/callback"):
            sys.stderr.write(
                f"callback: {self.command} /callback -> {args[1] if len(args) > 1 else '?'}\n"
            )

    def _page(self, status: int, title: str, body: str) -> None:
        data = PAGE.format(title=html.escape(title), body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, status: int, title: str, detail: str) -> None:
        sys.stderr.write(f"callback: {title}: {detail}\n")
        self._page(status, title, f'<p class="error">{html.escape(detail)}</p>')
        self.server.outcome = 1

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        config = self.server.config
        if parts.path == "/":
            link = html.escape(config.authorize_url)
            start = f' <a href="{link}">Start the flow</a>.' if link else ""
            body = f"<p>Waiting for the authorization response on /callback.{start}</p>"
            self._page(200, "authgate test client", body)
            return
        if parts.path != "/callback":
            self._page(404, "Not found", "<p>Only /callback is served here.</p>")
            return
        self._callback(parse_qs(parts.query, keep_blank_values=True))

    def _callback(self, query: dict[str, list[str]]) -> None:
        config = self.server.config
        params = {name: values[0] for name, values in query.items()}
        if "error" in params:
            detail = params["error"]
            if params.get("error_description"):
                detail += ": " + params["error_description"]
            self._fail(400, "The authorization failed", detail)
            return
        if params.get("state") != config.state:
            self._fail(400, "State mismatch", "the state does not match the one this flow sent")
            return
        code = params.get("code")
        if not code:
            self._fail(400, "Missing code", "the callback carries no authorization code")
            return
        status, body, raw = exchange_code(config, code)
        if status != 200 or body is None or "access_token" not in body:
            shown = json.dumps(body, indent=2) if body is not None else raw
            self._fail(502, "The token request failed", f"HTTP {status}: {shown}")
            return
        tokens = json.dumps(body, indent=2)
        print(tokens, flush=True)
        sample = (
            f"curl -H 'Authorization: Bearer {body['access_token']}' "
            f"{config.api_url.rstrip('/')}/api/v2/users/me"
        )
        sys.stderr.write(f"\nTry the access token:\n  {sample}\n")
        self._page(
            200,
            "Tokens received",
            f"<pre>{html.escape(tokens)}</pre><p>Try it:</p><pre>{html.escape(sample)}</pre>",
        )
        self.server.outcome = 0


def serve(config: Config) -> int:
    try:
        server = CallbackServer((config.host, config.port), Handler)
    except OSError as exc:
        sys.stderr.write(
            f"callback: cannot listen on {config.host}:{config.port}: {exc} "
            "(set CALLBACK_PORT to a free port)\n"
        )
        return 2
    server.config = config
    server.outcome = None
    server.timeout = 0.5
    sys.stderr.write(f"callback: listening on {config.redirect_uri}\n")
    deadline = time.monotonic() + config.timeout if config.timeout > 0 else None
    last = 1
    with server:
        while True:
            server.handle_request()
            if server.outcome is not None:
                last = server.outcome
                if not config.keep_running:
                    return last
                server.outcome = None
            if deadline is not None and time.monotonic() > deadline:
                sys.stderr.write(f"callback: no callback within {config.timeout:g} s, giving up\n")
                return last if config.keep_running else 1


def main() -> int:
    try:
        return serve(parse_args(sys.argv[1:]))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
