"""The systems under test: authgate (SQLite, PostgreSQL; 1 or 2 workers), node-oidc-provider and
the floor. Each is started on loopback, provisioned alike and stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench.harness.provision import (
    REDIRECT_URI,
    RESOURCE_JWT,
    RESOURCE_OPAQUE,
    SCOPE,
    USERNAME,
)

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
PEER_DIR = BENCH / "peers" / "oidc-provider"
VENV_BIN = Path(sys.executable).parent
PASSWORD = "bench-password-" + "x" * 12


@dataclass(frozen=True)
class Paths:
    token: str
    introspect: str
    revoke: str
    jwks: str
    metadata: str
    authorize: str
    ready: str


AUTHGATE_PATHS = Paths(
    token="/oauth2/token",
    introspect="/oauth2/introspect",
    revoke="/oauth2/revoke",
    jwks="/.well-known/jwks.json",
    metadata="/.well-known/oauth-authorization-server",
    authorize="/oauth2/authorize",
    ready="/readyz",
)
PEER_PATHS = Paths(
    token="/token",
    introspect="/token/introspection",
    revoke="/token/revocation",
    jwks="/jwks",
    metadata="/.well-known/openid-configuration",
    authorize="/auth",
    ready="/.well-known/openid-configuration",
)


@dataclass
class Server:
    name: str
    kind: str  # authgate | peer | floor
    backend: str  # sqlite | postgresql | memory | none
    workers: int
    url: str
    paths: Paths
    client_id: str
    client_secret: str
    proc: subprocess.Popen[bytes]
    db_pid: int | None = None  # the PostgreSQL postmaster, for its CPU time
    database_url: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def basic(self) -> tuple[str, str]:
        return self.client_id, self.client_secret

    @property
    def signs_in(self) -> bool:
        """authgate and the floor show a sign-in page; the peer signs the user in itself."""
        return self.kind != "peer"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    return {**env, **extra}


def node_binary() -> Path:
    """Node from the npm registry (bench's own node_modules) when installed, else the system's."""
    local = PEER_DIR / "node_modules" / ".bin" / "node"
    return local if local.exists() else Path("node")


def peer_installed() -> bool:
    return (PEER_DIR / "node_modules" / "oidc-provider" / "package.json").exists()


def pinned(args: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *args] if cpus else args


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


class Launcher:
    """Starts servers and remembers them, so `stop_all` stops exactly what it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[subprocess.Popen[bytes]] = []

    def popen(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(  # noqa: S603 (our own argument lists)
            args,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops it in order
        )
        log.close()
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        while self.running:
            stop_process(self.running.pop())

    def wait_ready(self, proc: subprocess.Popen[bytes], url: str, name: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready at {url}")

    # authgate ----------------------------------------------------------------------------

    def authgate(
        self,
        name: str,
        *,
        database_url: str,
        workers: int,
        cpus: str | None,
        db_pid: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> Server:
        port = free_port()
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}"
        env = clean_env(
            AUTHGATE_ISSUER=url,
            AUTHGATE_DATA_DIR=str(data),
            AUTHGATE_DATABASE_URL=database_url,
            AUTHGATE_SECRET_KEY=secrets.token_urlsafe(32),
            # Same work as the peer: no rate limits, no access log line per request.
            AUTHGATE_LOG_LEVEL="WARNING",
            AUTHGATE_TOKEN_RATE_PER_CLIENT="0",
            AUTHGATE_INTROSPECTION_RATE_PER_CLIENT="0",
            AUTHGATE_SIGN_IN_RATE_PER_IP="0",
            AUTHGATE_SIGN_IN_ATTEMPTS_PER_USER="0",
        )
        env.update(settings or {})  # a variant's own settings win
        made = subprocess.run(  # noqa: S603 (our own argument lists)
            [sys.executable, "-m", "bench.harness.provision", PASSWORD],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"provisioning {name} failed: {made.stderr}")
        creds = json.loads(made.stdout.strip().splitlines()[-1])
        args = [str(VENV_BIN / "authgate"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        proc = self.popen(pinned(args, cpus), env, name)
        self.wait_ready(proc, url + AUTHGATE_PATHS.ready, name)
        backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
        return Server(
            name,
            "authgate",
            backend,
            workers,
            url,
            AUTHGATE_PATHS,
            creds["client_id"],
            creds["client_secret"],
            proc,
            db_pid=db_pid,
            database_url=database_url or f"sqlite:///{data / 'authgate.db'}",
        )

    # node-oidc-provider ------------------------------------------------------------------

    def peer(self, name: str, *, cpus: str | None) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        client_id, client_secret = "bench-client", secrets.token_urlsafe(32)
        env = clean_env(
            PORT=str(port),
            ISSUER=url,
            CLIENT_ID=client_id,
            CLIENT_SECRET=client_secret,
            REDIRECT_URI=REDIRECT_URI,
            RESOURCE_JWT=RESOURCE_JWT,
            RESOURCE_OPAQUE=RESOURCE_OPAQUE,
            SCOPE=SCOPE,
            BENCH_USER=USERNAME,
            NODE_ENV="production",
        )
        args = [str(node_binary()), str(PEER_DIR / "server.mjs")]
        proc = self.popen(pinned(args, cpus), env, name)
        self.wait_ready(proc, url + PEER_PATHS.ready, name)
        return Server(name, "peer", "memory", 1, url, PEER_PATHS, client_id, client_secret, proc)

    # the floor ---------------------------------------------------------------------------

    def floor(self, name: str, *, workers: int, cpus: str | None) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        proc = self.popen(pinned(args, cpus), clean_env(), name)
        self.wait_ready(proc, url + AUTHGATE_PATHS.ready, name)
        return Server(name, "floor", "none", workers, url, AUTHGATE_PATHS, "floor", "x", proc)


class PostgresCluster:
    """A throwaway cluster of our own (scripts/pg.sh), or databases on a server given by URL."""

    def __init__(self, workdir: Path, port: int, url: str | None = None) -> None:
        self.dir = workdir / "pg"
        self.port = port
        self.given = url
        self.url = url or ""
        self.started = False
        self.databases: list[str] = []

    def start(self) -> None:
        if self.given:
            return
        made = subprocess.run(  # noqa: S603 (our own argument lists)
            [str(ROOT / "scripts" / "pg.sh"), "start", str(self.dir), str(self.port)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"scripts/pg.sh start failed: {made.stderr}")
        self.started = True
        self.url = made.stdout.strip().splitlines()[-1]

    @property
    def postmaster_pid(self) -> int | None:
        pidfile = self.dir / "data" / "postmaster.pid"
        if not self.started or not pidfile.exists():
            return None
        return int(pidfile.read_text().split()[0])

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        self.databases.append(name)
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def stop(self) -> None:
        if self.given and self.databases:
            import sqlalchemy as sa

            engine = sa.create_engine(
                self.given.replace("postgresql://", "postgresql+psycopg://"),
                isolation_level="AUTOCOMMIT",
            )
            with engine.connect() as conn:
                for name in self.databases:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            engine.dispose()
            self.databases.clear()
        if self.started:
            subprocess.run(  # noqa: S603 (our own argument lists)
                [str(ROOT / "scripts" / "pg.sh"), "stop", str(self.dir)],
                capture_output=True,
                timeout=120,
                check=False,
            )
            self.started = False
