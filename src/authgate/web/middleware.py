"""ASGI middleware: a request id on every request and response, and one structured log line."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.logs import REQUEST_ID
from authgate.web import errors

log = logging.getLogger("authgate.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_BODY = 1024 * 1024


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

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                await _too_large(send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Caught here, inside the request id, so the 500 carries it and the log names it.
            if started:
                raise
            await errors.unexpected(rid, exc)(scope, receive, send_with_id)
        finally:
            # Paths only: query strings may carry codes or states.
            log.info(
                json.dumps(
                    {
                        "request_id": rid,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - start) * 1000, 2),
                    }
                )
            )


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
