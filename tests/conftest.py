"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when the test command
started one), the app on it, users, tokens and apps."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate import storage
from authgate.app import Services, build_services, create_app, warm_up
from authgate.config import Settings
from authgate.core import accounts, clients, resources, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import App, ScopeInfo, ServiceAccess, User
from authgate.core.resources import ResourceFields
from tests.clock import MovableClock
from tests.flows import REDIRECT_URI, RESOURCE, login

# tests/leaks.py: no test may leak a secret into logs, audit entries or responses.
pytest_plugins = ["tests.leaks"]

PG_URL = os.environ.get("AUTHGATE_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("AUTHGATE_REQUIRE_POSTGRES") == "1"
PASSWORD = "correct horse battery staple"
ISSUER = "http://testserver"


def _pg_template() -> str:
    """Migrate one template database per session; each test clones it (fast)."""
    assert PG_URL is not None
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"authgate_tpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    storage.upgrade(_pg_db_url(name))
    return name


@functools.cache
def _pg_admin() -> sa.Engine:
    """The connections that create and drop the tests' databases: kept for the session."""
    assert PG_URL is not None
    return sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


@functools.cache
def _strategy() -> str:
    """FILE_COPY where the server has it (PostgreSQL 15+): a copy of the template's files,
    faster than the default page-by-page copy through the WAL for a small database."""
    with _pg_admin().connect() as conn:
        version = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return " STRATEGY FILE_COPY" if version >= 150000 else ""


def _pg_db_url(name: str) -> str:
    assert PG_URL is not None
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> str | None:
    if PG_URL is None:
        return None
    return _pg_template()


def _backends() -> list[object]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "authgate.db"
    storage.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """Argon2id with test-sized costs: the production parameters cost ~100 ms a hash, and the
    suite hashes thousands of passwords. The algorithm and the code path stay the same."""
    from argon2 import PasswordHasher

    from authgate.crypto import passwords

    saved = passwords._HASHER
    passwords._HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    passwords._HASHER = saved


@pytest.fixture(params=_backends())
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_template: str | None,
    sqlite_template: Path,
) -> Iterator[str]:
    if request.param == "sqlite":
        # Copying a database migrated once per session is much faster than migrating each time.
        target = tmp_path / "authgate.db"
        shutil.copyfile(sqlite_template, target)
        yield f"sqlite:///{target}"
        return
    if PG_URL is None:
        if REQUIRE_PG:
            pytest.fail("AUTHGATE_REQUIRE_POSTGRES=1 but AUTHGATE_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured (set AUTHGATE_TEST_POSTGRES_URL)")
    name = f"authgate_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"{_strategy()}'))
    yield _pg_db_url(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


TEST_RESOURCES = (
    # RESOURCE (flows.py): JWT access tokens, two scopes.
    ResourceFields(
        identifier=RESOURCE,
        name="Example API",
        scopes=(ScopeInfo("read", "Read your data"), ScopeInfo("write", "Change your data")),
    ),
    ResourceFields(
        identifier="https://mcp.example.com/mcp",
        name="Example MCP server",
        scopes=(ScopeInfo("read", "Read your files"),),
        token_format="opaque",
    ),
    ResourceFields(identifier="https://other.example.com", name="Other API"),
)


@pytest.fixture
def services(settings: Settings, clock: MovableClock) -> Iterator[Services]:
    services = build_services(settings, clock=clock)
    warm_up(services)  # as `authgate serve` does
    for fields in TEST_RESOURCES:
        resources.create_resource(services.ctx, SYSTEM, fields)
    yield services
    services.store.close()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(settings, services=services), base_url=ISSUER) as test_client:
        yield test_client


@dataclass(frozen=True)
class Account:
    user: User
    password: str
    api_token: str


def make_account(services: Services, username: str, *, admin: bool) -> Account:
    user = accounts.create_user(
        services.ctx, SYSTEM, username=username, password=PASSWORD, is_admin=admin
    )
    _, token = accounts.create_api_token(services.ctx, SYSTEM, user, "tests", None)
    return Account(user, PASSWORD, token)


@pytest.fixture
def admin(services: Services) -> Account:
    return make_account(services, "admin", admin=True)


@pytest.fixture
def alice(services: Services) -> Account:
    return make_account(services, "alice", admin=False)


@pytest.fixture
def signed_in(client: TestClient, alice: Account) -> TestClient:
    login(client, alice.user.username, alice.password)
    return client


@dataclass(frozen=True)
class Client:
    app: App
    secret: str | None

    @property
    def id(self) -> str:
        return self.app.id


def make_client(
    services: Services,
    *,
    service_access: Mapping[str, Sequence[str]] | None = None,
    **fields: object,
) -> Client:
    """An operator-made app (and a secret if confidential). ``service_access`` grants its
    client_credentials tokens these resources and scopes, as an operator would."""
    values: dict[str, Any] = {"name": "Test app", "redirect_uris": [REDIRECT_URI]}
    values.update(fields)
    app = clients.create_app(services.ctx, SYSTEM, clients.AppFields(**values))
    if service_access:
        app = grant_access(services, app.id, service_access)
    if app.is_public:
        return Client(app, None)
    _, secret = clients.create_secret(services.ctx, SYSTEM, app.id)
    return Client(app, secret)


def grant_access(services: Services, app_id: str, access: Mapping[str, Sequence[str]]) -> App:
    """Grant an app's client_credentials tokens these resources and scopes (an operator's act)."""
    entries = [ServiceAccess(resource, tuple(scopes)) for resource, scopes in access.items()]
    app = services.store.get_app(app_id)
    assert app is not None
    return service_access.set_access(services.ctx, SYSTEM, app_id, [*app.service_access, *entries])


@pytest.fixture
def confidential(services: Services) -> Client:
    return make_client(services)


@pytest.fixture
def public(services: Services) -> Client:
    return make_client(services, name="Public app", client_type="public")


@dataclass(frozen=True)
class Issued:
    access: int
    refresh: int
    grants: int
    consumed_codes: int
    live_access: int


def issued(services: Services, app_id: str) -> Issued:
    """What the database holds for one app: the state an error test asserts did not change."""
    queries = {
        "access": "SELECT count(*) FROM access_tokens WHERE app_id = :a",
        "refresh": "SELECT count(*) FROM refresh_tokens WHERE app_id = :a",
        "grants": "SELECT count(*) FROM grants WHERE app_id = :a",
        "consumed_codes": "SELECT count(*) FROM authorization_codes "
        "WHERE app_id = :a AND consumed_at IS NOT NULL",
        "live_access": "SELECT count(*) FROM access_tokens WHERE app_id = :a "
        "AND revoked_at IS NULL",
    }
    with services.store.engine.connect() as conn:
        values = {
            k: int(conn.execute(sa.text(q), {"a": app_id}).scalar_one()) for k, q in queries.items()
        }
    return Issued(**values)
