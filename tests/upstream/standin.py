"""A tiny stand-in OpenID Provider in Python, for the answers node-oidc-provider will never
give: ID tokens with a wrong ``nonce`` or ``iss``, signed by a key not in its JWKS, expired.
It is used *in addition to* the real provider (tests/upstream/provider.py), never instead of
it: the happy path, linking and role mapping run against node-oidc-provider.

It serves discovery, a JWKS, a token endpoint that answers with the ID token the test set, and
UserInfo, over HTTPS on 127.0.0.1 with the tests' throwaway CA; it records the token requests
(so a test can check what authgate sent)."""

from __future__ import annotations

import json
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
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters

from tests.fetch.server import _QuietServer


def new_key() -> ECKey:
    params: KeyParameters = {"alg": "ES256", "use": "sig", "kid": secrets.token_hex(8)}
    return ECKey.generate_key("P-256", parameters=params, private=True)


@dataclass
class StandIn:
    issuer: str = ""
    key: ECKey = field(default_factory=new_key)
    metadata_extra: dict[str, Any] = field(default_factory=dict)
    id_token: str = ""
    token_status: int = 200
    userinfo: dict[str, Any] = field(default_factory=dict)
    token_requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "id_token_signing_alg_values_supported": ["ES256"],
            **self.metadata_extra,
        }

    def sign(self, claims: dict[str, Any], key: ECKey | None = None) -> str:
        """``claims`` over sensible defaults (a fresh token for ``client_id`` "authgate")."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": "authgate", "iat": now, "exp": now + 300, **claims}
        signer = key or self.key
        header = {"alg": "ES256", "kid": str(signer.kid)}
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, signer)

    def answer(self, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/.well-known/openid-configuration":
            return 200, self.metadata()
        if path == "/jwks":
            return 200, {"keys": [self.key.as_dict(private=False)]}
        if path == "/token":
            self.token_requests.append((form, headers))
            if self.token_status != 200:
                return self.token_status, {"error": "invalid_grant"}
            return 200, {
                "access_token": "standin-at",
                "token_type": "Bearer",
                "id_token": self.id_token,
            }
        if path == "/userinfo":
            return 200, self.userinfo
        return 404, {"error": "not_found"}


@contextmanager
def running(cert: Path, key: Path) -> Iterator[StandIn]:
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, form: dict[str, str]) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = stand_in.answer(self.path.split("?")[0], form, headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply({})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            self._reply({k: v[0] for k, v in parse_qs(raw).items()})

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    stand_in.issuer = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield stand_in
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
