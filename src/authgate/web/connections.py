"""Limits of the HTTP server itself: header size, time to send a request, open connections.

uvicorn's httptools protocol has none of the first two (a 50 MB header was read whole; a
connection that sends a request slowly, or nothing, was held forever), and its concurrency
limit answers in plain text. ``LimitedHttpProtocol`` adds them, per connection:

- the request line and headers of a request are at most ``max_header_bytes``: more is
  431 Request Header Fields Too Large (RFC 6585 §5), counted as the bytes arrive, so a huge
  header is refused after ``max_header_bytes`` plus one read, never buffered whole;
- a request, from its first byte (or from the connection's opening) to its last, arrives
  within ``request_timeout`` seconds, else 408 Request Timeout (RFC 9110 §15.5.9) and the
  connection is closed (a connection that sent nothing is closed without an answer); the
  time the application takes to answer is not counted;
- beyond ``max_connections`` open connections in this process, a request is answered 503
  with ``Retry-After`` and its connection closed.

Every refusal is a JSON error in the RFC 6749 shape the endpoints use, and closes the
connection (what the client sent next cannot be trusted to be framed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("authgate.connections")

#: Seconds a client is asked to wait after a 503 for too many connections.
BUSY_RETRY_AFTER = 5
#: The end of a request head; a bare LF is accepted by the parser, so it ends one too.
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int
    request_timeout: float
    max_connections: int


def protocol_factory(limits: ServerLimits) -> Any:
    """What uvicorn's ``http`` option takes: a callable that makes the protocol of one
    connection. A partial of a module-level class, so that it pickles to worker processes."""
    return partial(LimitedHttpProtocol, limits=limits)


def _error(status: bytes, error: str, description: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": error, "error_description": description}).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"cache-control: no-store\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


HEADERS_TOO_LARGE = _error(
    b"431 Request Header Fields Too Large",
    "invalid_request",
    "The request header fields are too large",
)
REQUEST_TIMEOUT = _error(
    b"408 Request Timeout", "invalid_request", "The request took too long to arrive"
)


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The answer beyond the connection cap (an ASGI app, so uvicorn frames it as usual)."""
    body = json.dumps(
        {"error": "temporarily_unavailable", "error_description": "The server is busy"}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"retry-after", str(BUSY_RETRY_AFTER).encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``ServerLimits`` (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.in_head = True  # reading a request line and headers
        self.head_bytes = 0
        self.tail = b""  # the last bytes of the head so far, to find its end across reads
        self.refused = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing is an incomplete request too.
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head and self._head_too_large(data):
            self._refuse(HEADERS_TOO_LARGE, "request header fields too large")
            return
        super().data_received(data)

    def _head_too_large(self, data: bytes) -> bool:
        """Count the head bytes in ``data`` (up to the blank line that ends the head)."""
        seen = self.tail + data
        ends = [i + len(end) for end in _HEAD_ENDS if (i := seen.find(end)) >= 0]
        if ends:
            self.head_bytes += min(ends) - len(self.tail)
            self.in_head, self.tail = False, b""
        else:
            self.head_bytes += len(data)
            self.tail = seen[-3:]
        return self.head_bytes > self.limits.max_header_bytes

    # Parser callbacks.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection cap reached: answering 503")
            app, self.app = self.app, _busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self.in_head, self.head_bytes, self.tail = True, 0, b""

    # The request deadline.
    def _arm(self) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(self.limits.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _timed_out(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.in_head and self.head_bytes == 0:
            # A connection that never began a request is closed without an answer: there is
            # nothing to answer, and a client that meant to use it will open another.
            self.refused = True
            self.transport.close()
            return
        self._refuse(REQUEST_TIMEOUT, "request timeout")

    def _refuse(self, response: bytes, why: str) -> None:
        """Answer ``response`` unless the application has begun answering this request (e.g.
        413 while the body still trickles in), and close the connection."""
        self.refused = True
        self._disarm()
        cycle: Any = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(response)
        if cycle is not None and not cycle.response_complete:
            # The application must not write after us: it sees a disconnect instead.
            cycle.disconnected = True
            cycle.message_event.set()
        log.info("connection refused: %s", why)
        self.transport.close()
