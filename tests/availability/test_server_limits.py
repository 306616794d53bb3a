"""The HTTP server has limits by default: header size, time to send a request, connections.

Against real `authgate serve` processes (SQLite), over raw sockets: a 64 KiB header is 431
while a 30 KiB one and a 40 KiB body are served; a slowloris of 50 connections that trickle
headers (and one that trickles a body) is answered 408 and closed once the request timeout
(set to 3 s here) has passed, however often it sends a byte, while a normal request is
answered throughout; beyond the connection cap (5 here) a request is 503, and served again
once connections close. Bounded: 50 sockets, 60 s per wait.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.availability.test_request_bodies import read_response
from tests.procs import Deployment, sqlite_node

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 3.0
SLOWLORIS = 50
CAP = 5


@pytest.fixture
def node(tmp_path: Path, sqlite_template: Path) -> Iterator[Deployment]:
    yield from sqlite_node(
        sqlite_template,
        tmp_path,
        "limits",
        AUTHGATE_HTTP_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT),
    )


@pytest.fixture
def capped(tmp_path: Path, sqlite_template: Path) -> Iterator[Deployment]:
    yield from sqlite_node(
        sqlite_template,
        tmp_path,
        "capped",
        AUTHGATE_HTTP_MAX_CONNECTIONS=str(CAP),
        AUTHGATE_HTTP_REQUEST_TIMEOUT_SECONDS="60",
    )


def raw(deployment: Deployment, request: bytes) -> tuple[int, dict[str, str], bytes]:
    sock = socket.create_connection(("127.0.0.1", deployment.port), timeout=60)
    try:
        sock.sendall(request)
        return read_response(sock)
    finally:
        sock.close()


def healthy(deployment: Deployment) -> bool:
    resp = httpx.get(f"{deployment.issuer}/healthz", timeout=30)
    return resp.status_code == 200


def token_with_padding(deployment: Deployment, padding: int) -> tuple[int, bytes]:
    """A client_credentials request whose form carries ``padding`` bytes of an unknown
    parameter, sent in one write with its head."""
    client_id, secret = deployment.service
    form = (
        f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
        f"&padding={'a' * padding}"
    ).encode()
    head = (
        f"POST /oauth2/tokens HTTP/1.1\r\nHost: 127.0.0.1:{deployment.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, _, body = raw(deployment, head + form)
    return status, body


def get_with_header(deployment: Deployment, size: int) -> tuple[int, dict[str, str], bytes]:
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{deployment.port}\r\n"
        f"X-Filler: {'a' * size}\r\nConnection: close\r\n\r\n"
    ).encode()
    return raw(deployment, request)


def test_a_64_kib_header_is_431_and_the_server_answers_others(node: Deployment) -> None:
    status, headers, body = get_with_header(node, 64 * 1024)
    assert status == 431, (status, body[:300])
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "The request header fields are too large",
    }
    assert headers["connection"] == "close" and headers["cache-control"] == "no-store"
    # Fifty of them, one after the other, leave the node serving as before.
    for _ in range(50):
        assert get_with_header(node, 64 * 1024)[0] == 431
    assert healthy(node)
    # Under the limit (32 KiB by default), a large header is served.
    status, _, body = get_with_header(node, 30 * 1024)
    assert status == 200, body[:300]
    # Only the head is counted: a 40 KiB body arriving in the same read is not a header.
    status, body = token_with_padding(node, 40 * 1024)
    assert status == 200 and b'"access_token"' in body, body[:300]


def _slow_sockets(deployment: Deployment) -> list[socket.socket]:
    socks = []
    for n in range(SLOWLORIS):
        sock = socket.create_connection(("127.0.0.1", deployment.port), timeout=30)
        if n % 5:  # most start a request; every fifth sends nothing at all
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{deployment.port}\r\n".encode())
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_a_slowloris_is_closed_after_the_request_timeout(node: Deployment) -> None:
    started = time.monotonic()
    socks = _slow_sockets(node)
    replies: dict[int, bytes] = {}
    closed_at: dict[int, float] = {}
    answered_meanwhile = False
    try:
        deadline = started + REQUEST_TIMEOUT + 60
        while len(closed_at) < len(socks) and time.monotonic() < deadline:
            for n, sock in enumerate(socks):
                if n in closed_at:
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    try:  # one more header line: trickling does not extend the deadline
                        if n % 5:
                            sock.send(b"X-Slow: 1\r\n")
                    except OSError:
                        closed_at[n] = time.monotonic()
                    continue
                except OSError:
                    closed_at[n] = time.monotonic()
                    continue
                replies[n] = replies.get(n, b"") + data
                if not data:
                    closed_at[n] = time.monotonic()
            if not answered_meanwhile and time.monotonic() - started < REQUEST_TIMEOUT - 1:
                # A normal request is answered while the slow ones are held.
                answered_meanwhile = healthy(node)
            time.sleep(0.25)
    finally:
        for sock in socks:
            sock.close()
    assert answered_meanwhile
    assert len(closed_at) == SLOWLORIS, f"{SLOWLORIS - len(closed_at)} connections still open"
    assert min(closed_at.values()) - started >= REQUEST_TIMEOUT - 0.5
    # Those that began a request are told why; those that sent nothing are only closed.
    began = [replies.get(n, b"") for n in range(SLOWLORIS) if n % 5]
    timed_out = [r for r in began if r.startswith(b"HTTP/1.1 408 ")]
    assert len(timed_out) >= len(began) * 0.9, [r[:40] for r in began][:5]
    assert all(b'"The request took too long to arrive"' in r for r in timed_out)
    assert [replies.get(n, b"") for n in range(0, SLOWLORIS, 5)] == [b""] * (SLOWLORIS // 5)
    assert healthy(node)


def test_a_body_that_trickles_is_408(node: Deployment) -> None:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=60)
    started = time.monotonic()
    try:
        sock.sendall(
            (
                f"POST /oauth2/tokens HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 1000\r\n\r\ngrant_type=client"
            ).encode()
        )
        status, headers, body = read_response(sock)
    finally:
        sock.close()
    assert status == 408, (status, body[:300])
    assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.5
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "The request took too long to arrive",
    }
    assert headers["connection"] == "close"


def test_beyond_the_connection_cap_a_request_is_503(capped: Deployment) -> None:
    held = [socket.create_connection(("127.0.0.1", capped.port), timeout=30) for _ in range(CAP)]
    try:
        time.sleep(0.5)  # let the server accept them (no clock to move: real sockets)
        status, headers, body = raw(
            capped,
            f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{capped.port}\r\n\r\n".encode(),
        )
        assert status == 503, (status, body[:300])
        assert json.loads(body) == {
            "error": "temporarily_unavailable",
            "error_description": "The server is busy",
        }
        assert headers["retry-after"] == "5" and headers["connection"] == "close"
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, the node serves again.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not healthy(capped):
        time.sleep(0.2)
    assert healthy(capped)
