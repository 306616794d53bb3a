"""Bearer token protection for any ASGI app (RFC 6750 §2.1, §3) and the RFC 9728 document.

`BearerAuth` reads `Authorization: Bearer <token>` (the only method offered: RFC 6750 §2.1),
verifies it, checks the required scopes, and puts the `AccessClaims` into
`scope["state"]["auth"]` (Starlette: `request.state.auth`). Refusals follow RFC 6750 §3 and
RFC 9728 §5.1, so an MCP client can find the authorization server from the 401 alone:

- no credentials: 401 `WWW-Authenticate: Bearer scope="…", resource_metadata="…"` — "If the
  request lacks any authentication information …, the resource server SHOULD NOT include an
  error code";
- malformed request: 400 `error="invalid_request"`;
- bad token: 401 `error="invalid_token"`;
- missing scope: 403 `error="insufficient_scope"`;

each with `scope="…"` (the required scopes, when there are any) and `resource_metadata="…"`,
built by `challenge.bearer_challenge`;
- authorization server unreachable: 503 (not 401: the token may be fine).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.resource_server import resource_metadata
from authgate.resource_server.challenge import bearer_challenge
from authgate.resource_server.claims import AccessClaims
from authgate.resource_server.errors import InvalidToken, VerifierUnavailable
from authgate.resource_server.verifier import TokenVerifier

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

logger = logging.getLogger(__name__)


class BearerAuth:
    """ASGI middleware requiring a valid bearer token with `required_scopes` on every request."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier,
        *,
        required_scopes: Iterable[str] = (),
        resource_metadata_url: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.required_scopes = tuple(dict.fromkeys(required_scopes))
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        outcome = await self._authenticate(scope)
        if isinstance(outcome, _Refusal):
            await outcome.send(scope, send)
            return
        state = {**scope.get("state", {}), "auth": outcome}
        await self.app({**scope, "state": state}, receive, send)

    async def _authenticate(self, scope: Scope) -> AccessClaims | _Refusal:
        values = [v for k, v in scope["headers"] if k.lower() == b"authorization"]
        if not values:
            return self._refuse(401)
        scheme, _, token = values[0].decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return self._refuse(401)  # another scheme: as if no credentials for us
        token = token.strip(" ")
        if len(values) > 1 or not _B64TOKEN.fullmatch(token):
            return self._refuse(400, "invalid_request", "The Authorization header is malformed")
        try:
            claims = await self.verifier.verify(token)
        except InvalidToken as exc:
            return self._refuse(401, "invalid_token", exc.description)
        except VerifierUnavailable as exc:
            # The client only sees a 503; the operator needs the reason (the message names
            # URLs and issuers, never a token).
            logger.warning("cannot verify bearer tokens, answering 503: %s", exc)
            return _Refusal(503, [(b"retry-after", b"5")], _json("temporarily_unavailable"))
        missing = [s for s in self.required_scopes if s not in claims.scopes]
        if missing:
            return self._refuse(403, "insufficient_scope")
        return claims

    def _refuse(
        self, status: int, error: str | None = None, description: str | None = None
    ) -> _Refusal:
        """A refusal whose challenge names the scopes every request here needs (RFC 6750 §3;
        MCP clients request them after a 401 and step up after a 403)."""
        challenge = bearer_challenge(
            error=error,
            description=description,
            scopes=self.required_scopes,
            resource_metadata=self.resource_metadata_url,
        )
        body = _json(error, description) if error is not None else b""
        return _Refusal(status, [(b"www-authenticate", challenge.encode("latin-1"))], body)


class _Refusal:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    async def send(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [*self.headers, (b"cache-control", b"no-store")]
        if self.body:
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _json(error: str, description: str | None = None) -> bytes:
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return json.dumps(body).encode()


def protected_resource_metadata_app(
    resource: str,
    authorization_servers: Sequence[str],
    scopes_supported: Sequence[str] | None = None,
    resource_name: str | None = None,
) -> ASGIApp:
    """An ASGI app serving the RFC 9728 §3 document at `/.well-known/oauth-protected-resource`
    and, for a resource with a path, at the path-suffixed URL (RFC 9728 §3.1). CORS-open, as
    browser-based MCP clients fetch it cross-origin."""
    body = json.dumps(
        resource_metadata.document(resource, authorization_servers, scopes_supported, resource_name)
    ).encode()
    suffixed = resource_metadata.metadata_path(resource).partition("?")[0]
    paths = {resource_metadata.WELL_KNOWN, suffixed}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] not in paths:
            status, headers, content = 404, [], b""
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            status, headers, content = 405, [(b"allow", b"GET, HEAD, OPTIONS")], b""
        else:
            status, content = 200, body if scope["method"] != "OPTIONS" else b""
            headers = [
                (b"content-type", b"application/json"),
                (b"cache-control", b"public, max-age=3600"),
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
            ]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        payload = b"" if scope["method"] == "HEAD" else content
        await send({"type": "http.response.body", "body": payload})

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge both (ASGI lifespan protocol)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
