"""The floor: a bare ASGI app (no framework) on the server stack authgate runs on.

It answers authgate's paths with constant bodies, after reading the request body as a real
endpoint would, so a benchmark of it measures what uvicorn and the event loop alone cost. It is
served by uvicorn with the options `authgate serve` passes (src/authgate/cli/serve.py).

    python -m bench.floor --port 8000 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REDIRECT_URI = "http://localhost:9876/callback"
ISSUER = "http://127.0.0.1"

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


TOKEN = _json(
    {
        "access_token": "floor." + "a" * 200,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "read",
        "refresh_token": "floor-refresh-" + "r" * 40,
    }
)
INTROSPECTION = _json(
    {
        "active": True,
        "client_id": "floor",
        "scope": "read",
        "token_type": "Bearer",
        "exp": 2_000_000_000,
        "iat": 1_700_000_000,
        "iss": ISSUER,
        "aud": "https://api.bench.test/opaque",
    }
)
METADATA = _json(
    {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/oauth2/authorize",
        "token_endpoint": f"{ISSUER}/oauth2/token",
        "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
        "introspection_endpoint": f"{ISSUER}/oauth2/introspect",
        "revocation_endpoint": f"{ISSUER}/oauth2/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }
)
JWKS = _json(
    {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "kid": "floor",
                "alg": "ES256",
                "use": "sig",
            }
        ]
    }
)
FORM = (
    b'<html><body><form method="post">'
    b'<input name="csrf_token" value="floor-csrf"></form></body></html>'
)

# (method, path) -> (status, content type, body, extra headers)
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
NO_STORE = [(b"cache-control", b"no-store")]
ROUTES: dict[tuple[str, str], Answer] = {
    ("GET", "/.well-known/oauth-authorization-server"): (200, JSON, METADATA, []),
    ("GET", "/.well-known/openid-configuration"): (200, JSON, METADATA, []),
    ("GET", "/.well-known/jwks.json"): (200, JSON, JWKS, []),
    ("POST", "/oauth2/token"): (200, JSON, TOKEN, NO_STORE),
    ("POST", "/oauth2/tokens"): (200, JSON, TOKEN, NO_STORE),
    ("POST", "/oauth2/introspect"): (200, JSON, INTROSPECTION, NO_STORE),
    ("POST", "/oauth2/revoke"): (200, JSON, b"", []),
    ("GET", "/oauth2/authorize"): (200, HTML, FORM, []),
    (
        "POST",
        "/oauth2/authorize",
    ): (302, HTML, b"", [(b"location", f"{REDIRECT_URI}?code=floor-code&state=s".encode())]),
    ("GET", "/login"): (200, HTML, FORM, []),
    ("POST", "/login"): (
        303,
        HTML,
        b"",
        [(b"location", b"/"), (b"set-cookie", b"authgate_session=floor; Path=/; HttpOnly")],
    ),
    ("GET", "/readyz"): (200, JSON, b'{"status":"ok"}', []),
}
NOT_FOUND: Answer = (404, JSON, b'{"error":"not_found"}', [])


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as an endpoint parsing a form does
        message = await receive()
        more = message.get("more_body", False)
    status, content_type, body, extra = ROUTES.get((scope["method"], scope["path"]), NOT_FOUND)
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def factory() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    # To compare server stacks (bench/README.md): auto is uvloop and httptools when installed.
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    args = parser.parse_args()
    # The options of `authgate serve`.
    options: dict[str, Any] = {
        "loop": args.loop,
        "http": args.http,
        "host": args.host,
        "port": args.port,
        "proxy_headers": False,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 20,  # AUTHGATE_SHUTDOWN_GRACE_SECONDS
    }
    if args.workers > 1:
        uvicorn.run("bench.floor:factory", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(app, **options)


if __name__ == "__main__":
    main()
