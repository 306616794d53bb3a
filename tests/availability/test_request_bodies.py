"""Request bodies are bounded by the bytes that arrive, not by ``Content-Length``.

Against a real `authgate serve` process (SQLite), over raw sockets: a 100 MiB chunked body
(no ``Content-Length``) to the token endpoint, the management API (unauthenticated) and the
sign-in form is answered 413 once the limit (1 MiB) has arrived, before authentication,
parsing or any database work, and the server's peak RSS stays under 200 MB; a small chunked
body is read and answered as usual. Bounded: at most 100 MiB sent per request, 60 s per socket.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.procs import Deployment, Node, Processes, provision

CHUNK = 64 * 1024
ATTACK_BYTES = 100 * 1024 * 1024
PEAK_RSS_LIMIT = 200 * 1024 * 1024


@pytest.fixture
def node(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[Deployment, Node]]:
    database = tmp_path / "authgate.db"
    database.write_bytes(sqlite_template.read_bytes())
    processes = Processes()
    try:
        deployment = provision(f"sqlite:///{database}", tmp_path, processes)
        yield deployment, deployment.start("bodies")
    finally:
        processes.stop_all()


def peak_rss(node: Node) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def chunked_post(
    port: int, path: str, content_type: str, total: int
) -> tuple[int, dict[str, str], bytes, int]:
    """POST ``total`` bytes in chunks, stopping as soon as the server answers; returns the
    status, headers, body and the bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.setblocking(False)
        payload = b"%x\r\n" % CHUNK + b"a" * CHUNK + b"\r\n"
        reply = b""
        while sent < total:
            try:
                reply += sock.recv(65536)
                if reply:
                    break
            except BlockingIOError:
                pass
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                break
            sent += CHUNK
        if sent >= total and not reply:
            sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        status, headers, body = read_response(sock, reply)
    finally:
        sock.close()
    return status, headers, body, sent


def read_response(sock: socket.socket, reply: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names) and the whole body."""
    deadline = time.monotonic() + 30
    while b"\r\n\r\n" not in reply and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        reply += data
    head_text, _, body = reply.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    chunked = headers.get("transfer-encoding") == "chunked"
    length = int(headers.get("content-length", "0"))
    while time.monotonic() < deadline and (
        (chunked and b"0\r\n\r\n" not in body) or (not chunked and len(body) < length)
    ):
        data = sock.recv(65536)
        if not data:
            break
        body += data
    if chunked:
        decoded = b""
        while body:
            size_text, _, rest = body.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            decoded, body = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return int(lines[0].split()[1]), headers, body[:length] if not chunked else body


def users(deployment: Deployment) -> int:
    engine = sa.create_engine(deployment.env["AUTHGATE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/oauth2/tokens", "application/x-www-form-urlencoded"),
        ("/api/v2/users", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
    ],
)
def test_a_huge_chunked_body_is_413_and_memory_stays_flat(
    node: tuple[Deployment, Node], path: str, content_type: str
) -> None:
    deployment, server = node
    before = users(deployment)
    status, headers, body, sent = chunked_post(deployment.port, path, content_type, ATTACK_BYTES)
    assert status == 413, (status, body[:300])
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "The request body is too large",
    }
    assert headers["cache-control"] == "no-store" and headers["x-request-id"]
    assert sent < ATTACK_BYTES  # the server answered long before the attacker finished
    assert peak_rss(server) < PEAK_RSS_LIMIT, peak_rss(server)
    assert users(deployment) == before
    # The node serves everyone else as before.
    status, body = small_chunked_token_request(deployment)
    assert status == 200 and b'"access_token"' in body, body[:300]


def small_chunked_token_request(deployment: Deployment) -> tuple[int, bytes]:
    """A client_credentials request whose form arrives in two chunks."""
    client_id, secret = deployment.service
    form = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}".encode()
    sock = socket.create_connection(("127.0.0.1", deployment.port), timeout=30)
    try:
        head = (
            f"POST /oauth2/tokens HTTP/1.1\r\nHost: 127.0.0.1:{deployment.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        half = len(form) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (form[:half], form[half:]))
        sock.sendall(head + chunks + b"0\r\n\r\n")
        status, _, body = read_response(sock)
    finally:
        sock.close()
    return status, body


def test_a_small_chunked_body_is_read_as_usual(node: tuple[Deployment, Node]) -> None:
    status, body = small_chunked_token_request(node[0])
    assert status == 200, body[:500]
    assert b'"access_token"' in body and b'"token_type":"Bearer"' in body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or a reset) while the client sends nothing
    more; waits at most 30 s."""
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_413_closes_the_connection_instead_of_reading_the_rest(
    node: tuple[Deployment, Node], framing: str
) -> None:
    """The server stops reading at the limit: it answers 413 with ``Connection: close`` and
    closes the connection while the client still owes it most of the body, rather than
    reading and dropping the rest to keep the connection for a next request."""
    deployment, _ = node
    port = deployment.port
    length = (
        "Transfer-Encoding: chunked" if framing == "chunked" else f"Content-Length: {ATTACK_BYTES}"
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        head = (
            f"POST /oauth2/tokens HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n{length}\r\n\r\n"
        )
        sent = b""
        if framing == "chunked":
            # Twice the limit, then nothing more: 98 MiB of the body are still owed.
            sent = (b"%x\r\n" % CHUNK + b"a" * CHUNK + b"\r\n") * 32
        sock.sendall(head.encode() + sent)
        status, headers, body = read_response(sock)
        assert status == 413, body[:300]
        assert headers["connection"] == "close"
        assert json.loads(body)["error_description"] == "The request body is too large"
        assert closed_by_server(sock)
    finally:
        sock.close()
    status, body = small_chunked_token_request(deployment)
    assert status == 200 and b'"access_token"' in body, body[:300]
