"""Real processes for the tests that need them: `authgate serve` nodes on loopback ports, the
browser steps against their pages, and throwaway PostgreSQL clusters (scripts/pg.sh) that a
test may stop and start again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.test_mcp_sdk import AUTHGATE, ROOT, Processes, clean_env, free_port, wait_until

__all__ = [
    "AUTHGATE",
    "PASSWORD",
    "PG_URL",
    "REDIRECT_URI",
    "REQUIRE_PG",
    "ROOT",
    "Deployment",
    "Node",
    "PgCluster",
    "Processes",
    "clean_env",
    "free_port",
    "fresh_pg_database",
    "introspect",
    "own_pg_cluster",
    "provision",
    "race",
    "require_postgres",
    "run_cli",
    "sign_in",
    "sign_in_and_allow",
    "sqlite_node",
    "token",
    "wait_ready",
    "wait_until",
]

PG_URL = os.environ.get("AUTHGATE_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("AUTHGATE_REQUIRE_POSTGRES") == "1"
REDIRECT_URI = "http://localhost:9876/callback"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PG_SH = ROOT / "scripts" / "pg.sh"


@dataclass
class Node:
    url: str
    proc: subprocess.Popen[bytes]


def run_cli(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [str(AUTHGATE), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"authgate {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else None


def wait_ready(node: Node, name: str) -> None:
    wait_until(lambda: httpx.get(f"{node.url}/readyz").status_code == 200, node.proc, name)


def sign_in_and_allow(
    node: Node,
    issuer: str,
    client_id: str,
    pkce_challenge: str,
    *,
    username: str = "admin",
    browser: httpx.Client | None = None,
) -> str:
    """The user signs in and allows on `node`'s pages; returns the authorization code. Pass a
    `browser` that signed in already to skip the sign-in."""
    if browser is None:
        with httpx.Client(base_url=node.url, follow_redirects=False, timeout=30) as fresh:
            sign_in(fresh, username)
            return sign_in_and_allow(node, issuer, client_id, pkce_challenge, browser=fresh)
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "state": "st",
            "code_challenge": pkce_challenge,
            "code_challenge_method": "S256",
        }
    )
    url = f"/oauth2/authorize?{query}"
    page = browser.get(url)
    if page.status_code == 200:  # the consent page (a later run remembers the consent)
        match = CSRF.search(page.text)
        assert match is not None, page.text
        page = browser.post(url, data={"csrf_token": match.group(1), "decision": "allow"})
    assert page.status_code == 302, page.text
    params = parse_qs(urlsplit(page.headers["location"]).query)
    assert params["iss"] == [issuer]  # every node answers as the one issuer (RFC 9207)
    return params["code"][0]


def sign_in(browser: httpx.Client, username: str = "admin") -> None:
    page = browser.get("/login")
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match is not None
    form = {"username": username, "password": PASSWORD, "csrf_token": match.group(1)}
    assert browser.post("/login", data=form).status_code == 303


def token(node: Node, creds: tuple[str, str], **data: str) -> httpx.Response:
    return httpx.post(f"{node.url}/oauth2/tokens", data=data, auth=creds, timeout=30)


def introspect(node: Node, creds: tuple[str, str], value: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{node.url}/oauth2/introspect", data={"token": value}, auth=creds, timeout=30
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def require_postgres(reason: str) -> None:
    """Fail (AUTHGATE_REQUIRE_POSTGRES=1) or skip: PostgreSQL is not available."""
    if REQUIRE_PG:
        pytest.fail(f"AUTHGATE_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def fresh_pg_database(server_url: str | None, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server_url`, dropped afterwards."""
    if server_url is None:
        require_postgres("AUTHGATE_TEST_POSTGRES_URL is not set")
    assert server_url is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class PgCluster:
    """A PostgreSQL cluster of the test's own (scripts/pg.sh), which it may take down."""

    directory: Path
    port: int
    url: str

    def stop(self) -> None:
        """Shut the server down (fast: sessions are disconnected, as in an outage)."""
        _pg_ctl("-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start it again, as scripts/pg.sh started it."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory / 'socket'} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.directory / "server.log")
        _pg_ctl(
            "-D", str(self.directory / "data"), "-l", log, "-w", "-t", "60", "-o", options, "start"
        )


def _pg_ctl(*args: str) -> None:
    binary = _pg_binary("pg_ctl")
    command = [binary, *args]
    if os.getuid() == 0:  # postgres refuses to run as root (as in scripts/pg.sh)
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}"


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return str(Path(found).resolve())
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not versions:
        require_postgres(f"no {name} to run a PostgreSQL cluster of the test's own")
    return str(versions[0])


@contextmanager
def own_pg_cluster() -> Iterator[PgCluster]:
    """Start a throwaway cluster on a free port; stop and remove it afterwards."""
    _pg_binary("initdb")
    # Under /tmp itself: the cluster runs as `postgres`, which cannot enter pytest's 0700 dirs.
    directory = Path(tempfile.mkdtemp(prefix="authgate-pg-"))
    port = free_port()
    result = subprocess.run(
        ["bash", str(PG_SH), "start", str(directory), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        require_postgres(f"scripts/pg.sh could not start a cluster: {result.stderr.strip()}")
    try:
        yield PgCluster(directory, port, result.stdout.strip())
    finally:
        subprocess.run(
            ["bash", str(PG_SH), "stop", str(directory)],
            capture_output=True,
            timeout=120,
            check=False,
        )


@dataclass
class Deployment:
    """One database made ready for `authgate serve`: an admin, a web app (authorization code and
    refresh) and a service (client credentials), each with a secret."""

    issuer: str
    port: int
    env: dict[str, str]
    workdir: Path
    processes: Processes
    web: tuple[str, str]
    service: tuple[str, str]

    def start(self, name: str) -> Node:
        """`authgate serve` on the issuer's port, ready to serve."""
        args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        node = Node(self.issuer, self.processes.start(args, self.env, self.workdir, name))
        wait_ready(node, name)
        return node

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.err").read_text(errors="replace")


def provision(database_url: str, workdir: Path, processes: Processes, **env: str) -> Deployment:
    """Migrate `database_url` and create the admin and the apps (in-process, through core, as
    the CLI would), for servers started with `Deployment.start`."""
    from authgate import storage
    from authgate.app import build_services
    from authgate.config import Settings
    from authgate.core import accounts, clients, service_access
    from authgate.core.context import SYSTEM
    from authgate.core.models import ServiceAccess

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    secret_key = "fault-injection-secret-" + "k" * 32
    storage.upgrade(database_url)
    settings = Settings(
        issuer=issuer, data_dir=workdir / "data", database_url=database_url, secret_key=secret_key
    )
    services = build_services(settings)
    try:
        ctx = services.ctx
        accounts.create_user(ctx, SYSTEM, username="admin", password=PASSWORD, is_admin=True)
        web = clients.create_app(
            ctx, SYSTEM, clients.AppFields(name="Web app", redirect_uris=[REDIRECT_URI])
        )
        service = clients.create_app(
            ctx, SYSTEM, clients.AppFields(name="Service", grant_types=["client_credentials"])
        )
        # client_credentials reaches only what an operator granted: authgate's own API.
        service = service_access.set_access(
            ctx, SYSTEM, service.id, [ServiceAccess(ctx.policy.audience, ())]
        )
        web_secret = clients.create_secret(ctx, SYSTEM, web.id)[1]
        service_secret = clients.create_secret(ctx, SYSTEM, service.id)[1]
    finally:
        services.store.close()
    full_env = clean_env(
        AUTHGATE_ISSUER=issuer,
        AUTHGATE_DATABASE_URL=database_url,
        AUTHGATE_SECRET_KEY=secret_key,
        AUTHGATE_DATA_DIR=str(workdir / "data"),
        AUTHGATE_LOG_LEVEL="WARNING",
        **env,
    )
    return Deployment(
        issuer,
        port,
        full_env,
        workdir,
        processes,
        (web.id, web_secret),
        (service.id, service_secret),
    )


def sqlite_node(template: Path, workdir: Path, name: str, **env: str) -> Iterator[Deployment]:
    """A copy of the migrated SQLite ``template`` in ``workdir``, provisioned, and one
    `authgate serve` on it with ``env`` set (a fixture's body: stopped after the test)."""
    database = workdir / "authgate.db"
    database.write_bytes(template.read_bytes())
    processes = Processes()
    try:
        deployment = provision(f"sqlite:///{database}", workdir, processes, **env)
        deployment.start(name)
        yield deployment
    finally:
        processes.stop_all()
