"""ASGI middleware: a request id on every request and response, one structured log line, and
the request metrics (``web/metrics.py``)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.logs import REQUEST_ID
from authgate.web import errors, metrics

log = logging.getLogger("authgate.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_BODY = 1024 * 1024
#: Who a request acted for, set by handlers on ``scope["state"]`` (identifiers, never secrets)
#: and added to the access log line.
LOGGED_STATE = ("client_id", "user_id")
#: An OAuth error body is small; a larger JSON error body is not one of ours to count.
_MAX_ERROR_BODY = 4096


def note(conn: HTTPConnection, **ids: str | None) -> None:
    """Record identifiers (``client_id``, ``user_id``) for this request's access log line."""
    state = conn.scope.setdefault("state", {})
    for name, value in ids.items():
        if name in LOGGED_STATE and value:
            state[name] = value[:256]


def oauth_error_code(headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
    """The ``error`` of an RFC 6749 §5.2 JSON body (not problem+json), else None."""
    content_type = dict(headers).get(b"content-type", b"")
    if not content_type.startswith(b"application/json") or len(body) > _MAX_ERROR_BODY:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, str) and re.fullmatch(r"[a-z_]{1,64}", error) else None


class RequestContext:
    """Assigns the request id (or keeps a well-formed incoming X-Request-Id), logs the outcome,
    and refuses request bodies over ``MAX_BODY`` bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.fullmatch(incoming) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid
        token = REQUEST_ID.set(rid)
        try:
            await self._handle(scope, receive, send, rid)
        finally:
            REQUEST_ID.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        start = time.perf_counter()
        status = 500
        started = False
        headers: list[tuple[bytes, bytes]] = []
        error_body = bytearray()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, headers
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                headers = list(message["headers"])
            elif status >= 400 and len(error_body) <= _MAX_ERROR_BODY:
                error_body.extend(message.get("body", b""))
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                await _too_large(send_with_id)
            elif _has_nul(scope):
                await _nul_in_url(send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Caught here, inside the request id, so the 500 carries it and the log names it.
            if started:
                raise
            await errors.unexpected(rid, exc)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            observed = metrics.of(scope)
            if observed is not None:
                error = oauth_error_code(headers, bytes(error_body)) if status >= 400 else None
                observed.observe_request(scope, status, seconds, error)
            if log.isEnabledFor(logging.INFO):
                # Paths only: query strings may carry codes or states.
                line: dict[str, object] = {
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                }
                state = scope.get("state", {})
                line.update({name: state[name] for name in LOGGED_STATE if state.get(name)})
                log.info(json.dumps(line))


def _has_nul(scope: Scope) -> bool:
    """A NUL in the URL: no authgate identifier contains one, and PostgreSQL refuses it in text,
    so it is refused here, before any lookup, as a client error."""
    query = scope.get("query_string", b"").lower()
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


async def _nul_in_url(send: Send) -> None:
    body = b'{"error":"invalid_request","error_description":"The URL contains a NUL character"}'
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send) -> None:
    body = b'{"error":"invalid_request","error_description":"The request body is too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})
