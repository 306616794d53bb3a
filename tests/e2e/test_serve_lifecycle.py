"""`authgate serve` as a real process: graceful shutdown on SIGTERM, several workers on one
port, the background cleanup, and start-up refused with the name of a bad setting.

The shutdown test holds a token request in flight deterministically: it sends the headers and
half the body, signals the server, checks that the port no longer accepts connections, then
sends the rest; the server must still answer that request in full before it exits.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from authgate import storage
from authgate.app import build_services
from authgate.config import Settings
from authgate.core import clients, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import ServiceAccess
from tests.e2e.test_mcp_sdk import AUTHGATE, ROOT, Processes, clean_env, free_port, wait_until
from tests.storage import store_builders as b

pytestmark = pytest.mark.slow
DEADLINE = 20.0
BASE = ("AUTHGATE_ISSUER", "AUTHGATE_DATA_DIR", "AUTHGATE_SECRET_KEY")


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    workdir: Path
    service: tuple[str, str]  # a client_credentials app: (client_id, secret)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()


def prepare(tmp_path: Path, **extra: str) -> tuple[dict[str, str], tuple[str, str]]:
    port = free_port()
    env = clean_env(
        AUTHGATE_ISSUER=f"http://127.0.0.1:{port}",
        AUTHGATE_PORT=str(port),
        AUTHGATE_HOST="127.0.0.1",
        AUTHGATE_DATA_DIR=str(tmp_path / "data"),
        AUTHGATE_SECRET_KEY="lifecycle-secret-" + "s" * 32,
        AUTHGATE_LOG_LEVEL="INFO",
        **extra,
    )
    # Set up in-process (the CLI's code paths, without three interpreter start-ups).
    values: dict[str, Any] = {
        k.removeprefix("AUTHGATE_").lower(): v for k, v in env.items() if k in extra or k in BASE
    }
    settings = Settings(**values)
    storage.upgrade(settings.resolved_database_url)
    services = build_services(settings)
    try:
        fields = clients.AppFields(
            name="Service", redirect_uris=(), grant_types=("client_credentials",)
        )
        app = clients.create_app(services.ctx, SYSTEM, fields)
        # client_credentials reaches only what an operator granted: authgate's own API.
        own_api = ServiceAccess(services.ctx.policy.audience)
        service_access.set_access(services.ctx, SYSTEM, app.id, [own_api])
        _, secret = clients.create_secret(services.ctx, SYSTEM, app.id)
    finally:
        services.store.close()
    return env, (app.id, secret)


def start(processes: Processes, tmp_path: Path, *args: str, **extra: str) -> Server:
    env, service = prepare(tmp_path, **extra)
    port = int(env["AUTHGATE_PORT"])
    proc = processes.start([str(AUTHGATE), "serve", *args], env, tmp_path, "serve")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, proc, "authgate serve")
    return Server(url, port, proc, env, tmp_path, service)


def token_body() -> bytes:
    return urlencode({"grant_type": "client_credentials"}).encode()


def basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    sock.settimeout(DEADLINE)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return status, headers, body


def test_sigterm_finishes_the_request_in_flight_then_exits(
    processes: Processes, tmp_path: Path
) -> None:
    server = start(processes, tmp_path)
    body = token_body()
    head = (
        f"POST /oauth2/tokens HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: {basic(server.service)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.3)  # the server has read the headers: the request is in flight
        os.kill(server.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + DEADLINE
        while accepts_connections(server.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not accepts_connections(server.port), "still accepting after SIGTERM"
        assert server.proc.poll() is None, "exited with a request in flight"
        sock.sendall(body[10:])
        status, headers, payload = read_response(sock)
    assert status == 200, payload
    assert headers["cache-control"] == "no-store"
    granted = json.loads(payload)
    assert granted["token_type"] == "Bearer" and granted["access_token"].startswith("agat_")
    # Shut down cleanly, then uvicorn re-raises the signal it caught, as a shell expects.
    assert server.proc.wait(timeout=DEADLINE) == -signal.SIGTERM
    log = (tmp_path / "serve.err").read_text() + (tmp_path / "serve.out").read_text()
    assert "Waiting for connections to close" in log or "Shutting down" in log
    assert granted["access_token"] not in log

    # The token it answered with was committed.
    store = storage.open_store(f"sqlite:///{tmp_path / 'data' / 'authgate.db'}")
    try:
        prefix = granted["access_token"].split("_")[1]
        assert store.get_access_token_by_prefix(prefix) is not None
    finally:
        store.close()


def test_two_workers_share_the_port_and_all_stop_on_sigterm(
    processes: Processes, tmp_path: Path
) -> None:
    server = start(processes, tmp_path, "--workers", "2")
    children = workers_of(server.proc.pid)
    assert len(children) == 2, children
    with httpx.Client(base_url=server.url, timeout=DEADLINE) as http:
        for _ in range(20):
            resp = http.post(
                "/oauth2/tokens",
                content=token_body(),
                headers={
                    "Authorization": basic(server.service),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["access_token"].startswith("agat_")
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=DEADLINE) in (0, -signal.SIGTERM)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"worker {pid} still runs"


def workers_of(pid: int) -> list[int]:
    """The worker processes of a `serve --workers` parent (not multiprocessing's tracker)."""
    deadline = time.monotonic() + DEADLINE
    found: list[int] = []
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        found = [int(c) for c in children if b"resource_tracker" not in _cmdline(int(c))]
        if len(found) >= 2:
            break
        time.sleep(0.1)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_the_server_cleans_expired_rows_in_the_background(
    processes: Processes, tmp_path: Path
) -> None:
    env, _ = prepare(
        tmp_path, AUTHGATE_CLEANUP_INTERVAL_SECONDS="1", AUTHGATE_CLEANUP_RETENTION_SECONDS="0"
    )
    store = storage.open_store(f"sqlite:///{tmp_path / 'data' / 'authgate.db'}")
    now = datetime.now(UTC)
    try:
        user = b.user()
        store.create_user(user)
        dead = b.session(user.id, created_at=now - timedelta(hours=2), expires_at=now)
        live = b.session(user.id, created_at=now, expires_at=now + timedelta(hours=1))
        store.create_session(dead)
        store.create_session(live)
        port = int(env["AUTHGATE_PORT"])
        proc = processes.start([str(AUTHGATE), "serve"], env, tmp_path, "serve")
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
            proc,
            "authgate serve",
        )
        deadline = time.monotonic() + DEADLINE
        while store.get_session_by_hash(dead.token_hash) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.get_session_by_hash(dead.token_hash) is None
        assert store.get_session_by_hash(live.token_hash) is not None
    finally:
        store.close()
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'authgate_cleanup_deleted_rows_total{kind="sessions"} 1.0' in metrics


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUTHGATE_WORKERS", "0"), ("AUTHGATE_CLEANUP_BATCH_SIZE", "many")],
)
def test_a_bad_setting_stops_start_up_and_is_named(tmp_path: Path, name: str, value: str) -> None:
    env = clean_env(AUTHGATE_DATA_DIR=str(tmp_path / "data"), **{name: value})
    result = subprocess.run(
        [str(AUTHGATE), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert name in result.stderr, result.stderr
