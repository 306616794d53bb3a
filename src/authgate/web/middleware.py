"""ASGI middleware: a request id on every request and response, one structured log line, and
the request metrics (``web/metrics.py``)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.requests import HTTPConnection, Request
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
    and refuses request bodies over ``MAX_BODY`` bytes (``_bounded_body``)."""

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

        try:
            body = await _bounded_body(scope, receive)
            if body is None:
                await _too_large(send_with_id)
            elif _has_nul(scope):
                await _nul_in_url(send_with_id)
            else:
                await self.app(scope, body, send_with_id)
        except Exception as exc:
            # Caught here, inside the request id, so the 500 carries it and the log names it.
            if started:
                raise
            await errors.unexpected(rid, exc, Request(scope))(scope, receive, send_with_id)
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


async def _bounded_body(scope: Scope, receive: Receive) -> Receive | None:
    """``receive`` for the app, or None when the body is over ``MAX_BODY`` bytes.

    Counted by the bytes that arrive, not by what ``Content-Length`` says: a declared length
    over the limit is refused before a byte is read; a body without one (chunked) is read here,
    up to the limit and no further, before the app runs, so no handler, authentication or
    parser sees a body that is too large and memory stays bounded however it is framed.

    The 413 closes the connection (``_too_large``): the rest of the body is never read. Kept
    open, the server would have to read and drop whatever the client still sends before the
    next request on it could begin, so a 100 MiB body would cost 100 MiB of reading anyway."""
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        declared = int(length) if length.isascii() and length.isdigit() else None
        # The server framed exactly ``declared`` bytes (it refuses a malformed length).
        return receive if declared is None or declared <= MAX_BODY else None
    if b"transfer-encoding" not in headers:
        return receive  # no body
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _replay(b"", message, receive)  # the client went away: pass that on
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return _replay(b"".join(chunks), None, receive)


def _replay(body: bytes, first: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read already (or the message that ended the
    reading), then the server's own messages (the disconnect)."""
    pending: list[Message] = [first or {"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


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
            "headers": [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-store"),
                # The unread rest of the body is dropped with the connection (_bounded_body).
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
