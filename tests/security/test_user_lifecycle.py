"""A user an administrator disabled, reset, deleted or demoted keeps nothing their apps held.

Before this, those actions ended only browser sessions: the user's apps kept rotating refresh
tokens (each rotation a fresh 30 days), introspection kept saying ``active: true`` and codes
issued before still redeemed. Now each of them ends the user's grants (DESIGN.md §7):

- a refresh answers 400 ``invalid_grant`` (RFC 6749 §5.2: "the provided authorization grant
  ... or refresh token is invalid, expired, revoked"), JSON and ``no-store``;
- introspection answers ``{"active": false}`` (RFC 7662 §2.2), to the resource's introspector
  and to the app itself;
- an unredeemed code answers ``invalid_grant``;
- the database holds the grants revoked (or, for a deleted user, nothing of them) and the
  refused requests issued nothing; one ``user.grants_revoked`` event counts what ended.

Removing administrator rights ends only the grants that carry the ``admin`` scope. Every attack
travels over real HTTP (``live``); the cross-node case runs two ``authgate serve`` processes on
one PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from authgate.app import Services
from authgate.config import Settings
from authgate.core import resources
from authgate.core.context import SYSTEM
from authgate.core.models import AuditQuery
from authgate.core.resources import ResourceFields
from tests.conftest import Account, Client, make_account, make_client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    refresh,
)
from tests.procs import (
    AUTHGATE,
    PASSWORD,
    PG_URL,
    REDIRECT_URI,
    Deployment,
    Node,
    Processes,
    free_port,
    fresh_pg_database,
    introspect,
    provision,
    run_cli,
    sign_in,
    sign_in_and_allow,
    token,
    wait_ready,
)
from tests.security.helpers import page_csrf, snapshot
from tests.security.live import Live

MCP = "https://mcp.example.com/mcp"  # tests/conftest.py TEST_RESOURCES: opaque tokens
API = "/api/v2"


@dataclass(frozen=True)
class Held:
    """What an app holds for a user: a redeemed code's tokens, and a code not yet redeemed."""

    app: Client
    refresh: str
    access: str
    code: str
    verifier: str
    resource: str


def hold(
    browser: httpx.Client, tokens: httpx.Client, app: Client, resource: str, scope: str
) -> Held:
    """The signed-in ``browser`` allows ``app``; its backend (``tokens``) redeems one code and
    keeps a second one for later."""
    pkce = generate_pkce()
    code = authorize(browser, app.id, challenge=pkce.challenge, resource=resource, scope=scope)
    body = assert_token_response(
        exchange_code(
            tokens,
            code,
            client_id=app.id,
            client_secret=app.secret,
            verifier=pkce.verifier,
            resource=resource,
        )
    )
    assert body["access_token"].startswith("agat_")  # opaque: checked by introspection
    later = generate_pkce()
    pending = authorize(browser, app.id, challenge=later.challenge, resource=resource, scope=scope)
    return Held(app, body["refresh_token"], body["access_token"], pending, later.verifier, resource)


def introspection(http: httpx.Client, creds: Client, value: str) -> httpx.Response:
    assert creds.secret is not None
    return http.post("/oauth2/introspect", data={"token": value}, auth=(creds.id, creds.secret))


def assert_ended(http: httpx.Client, held: Held, introspector: Client) -> None:
    """Refresh, introspection and the pending code are all refused, exactly."""
    resp = refresh(http, held.refresh, client_id=held.app.id, client_secret=held.app.secret)
    assert_oauth_error(resp, 400, "invalid_grant", "The refresh token is invalid or expired")
    for who, value in (
        (introspector, held.access),
        (held.app, held.access),
        (held.app, held.refresh),
    ):
        seen = introspection(http, who, value)
        assert seen.status_code == 200, seen.text
        assert seen.headers["cache-control"] == "no-store"
        assert seen.json() == {"active": False}
    resp = exchange_code(
        http,
        held.code,
        client_id=held.app.id,
        client_secret=held.app.secret,
        verifier=held.verifier,
        resource=held.resource,
    )
    assert_oauth_error(resp, 400, "invalid_grant", "The authorization code is invalid or expired")


def assert_alive(http: httpx.Client, held: Held, introspector: Client) -> None:
    seen = introspection(http, introspector, held.access)
    assert seen.status_code == 200 and seen.json()["active"] is True, seen.text
    resp = refresh(http, held.refresh, client_id=held.app.id, client_secret=held.app.secret)
    assert_token_response(resp)


def rows(services: Services, sql: str, **params: Any) -> list[Any]:
    with services.store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def grants_of(services: Services, user_id: str) -> list[tuple[str, Any]]:
    return [
        (r[0], r[1])
        for r in rows(
            services, "SELECT scope, revoked_at FROM grants WHERE user_id = :u", u=user_id
        )
    ]


@dataclass
class World:
    live: Live
    services: Services
    settings: Settings
    admin: Account
    app: Client
    introspector: Client
    http: httpx.Client  # the apps' backends: no cookies

    @contextmanager
    def browser(self, account: Account) -> Iterator[httpx.Client]:
        """A browser of its own, signed in as ``account``."""
        with self.live.client() as browser:
            login(browser, account.user.username, account.password)
            yield browser


@pytest.fixture
def world(live: Live, services: Services, settings: Settings, admin: Account) -> Iterator[World]:
    app = make_client(services, name="Files app")
    introspector = make_client(services, name="MCP server", redirect_uris=[REDIRECT_URI])
    resources.update_resource(
        services.ctx, SYSTEM, MCP, ResourceFields(introspectors=[introspector.id])
    )
    with live.client() as http:
        yield World(live, services, settings, admin, app, introspector, http)


# Each administrative action, made as an administrator would: through the management API or
# through the console's form. ``user`` is the target's id.

Action = Callable[[World, str], None]


def _api(world: World, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world.admin.api_token}"}
    return world.http.request(method, f"{API}{path}", headers=headers, **kwargs)


def api_disable(world: World, user: str) -> None:
    resp = _api(world, "PATCH", f"/users/{user}", json={"disabled": True})
    assert resp.status_code == 200 and resp.json()["disabled"] is True, resp.text


def api_password(world: World, user: str) -> None:
    resp = _api(world, "PATCH", f"/users/{user}", json={"password": "a brand new passphrase"})
    assert resp.status_code == 200, resp.text


def api_delete(world: World, user: str) -> None:
    resp = _api(world, "DELETE", f"/users/{user}")
    assert resp.status_code == 204, resp.text
    assert _api(world, "GET", f"/users/{user}").status_code == 404


def api_demote(world: World, user: str) -> None:
    resp = _api(world, "PATCH", f"/users/{user}", json={"is_admin": False})
    assert resp.status_code == 200 and resp.json()["is_admin"] is False, resp.text


def _console(world: World, path: str, **form: str) -> httpx.Response:
    with world.browser(world.admin) as console:
        token = page_csrf(console, "/admin/users")
        return console.post(path, data={"csrf_token": token, **form})


def console_disable(world: World, user: str) -> None:
    resp = _console(world, f"/admin/users/{user}/disable")
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/admin/users?notice=user-disabled"


def console_password(world: World, user: str) -> None:
    resp = _console(world, f"/admin/users/{user}/password")
    assert resp.status_code == 200, resp.text
    assert "New password for alice" in resp.text
    # The page says what happened, and what it cannot reach.
    assert "JWT access tokens already issued stay valid" in resp.text


def console_delete(world: World, user: str) -> None:
    resp = _console(world, f"/admin/users/{user}/delete", confirm="on")
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/admin/users?notice=user-deleted"


ENDING: list[Any] = [
    pytest.param(api_disable, "disabled", id="api-disable"),
    pytest.param(console_disable, "disabled", id="console-disable"),
    pytest.param(api_password, "password_reset", id="api-password-reset"),
    pytest.param(console_password, "password_reset", id="console-password-reset"),
    pytest.param(api_delete, "deleted", id="api-delete"),
    pytest.param(console_delete, "deleted", id="console-delete"),
]


@pytest.mark.parametrize(("action", "reason"), ENDING)
def test_action_ends_every_grant_of_the_user(
    world: World, services: Services, alice: Account, action: Action, reason: str
) -> None:
    bob = make_account(services, "bob", admin=False)
    other_app = make_client(services, name="Notes app")
    with world.browser(alice) as browser:
        held = [
            hold(browser, world.http, world.app, MCP, "read"),
            hold(browser, world.http, other_app, MCP, "read"),
        ]
    with world.browser(bob) as browser:
        bystander = hold(browser, world.http, world.app, MCP, "read")
    for h in held:
        seen = introspection(world.http, world.introspector, h.access)
        assert seen.json()["active"] is True, seen.text

    action(world, alice.user.id)

    before = snapshot(services)
    for h in held:
        assert_ended(world.http, h, world.introspector)
    assert snapshot(services) == before  # the refused requests issued and consumed nothing
    # The database: every grant of hers revoked (or gone with her), every pending code gone.
    if reason == "deleted":
        assert services.store.get_user(alice.user.id) is None
        for table in ("grants", "authorization_codes", "sessions", "api_tokens"):
            assert (
                rows(services, f"SELECT id FROM {table} WHERE user_id = :u", u=alice.user.id) == []
            )
        for table in ("access_tokens", "refresh_tokens"):
            assert (
                rows(services, f"SELECT id FROM {table} WHERE user_id = :u", u=alice.user.id) == []
            )
    else:
        theirs = grants_of(services, alice.user.id)
        assert len(theirs) == 2 and all(revoked is not None for _, revoked in theirs)
        live = rows(
            services,
            "SELECT id FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NULL "
            "UNION ALL SELECT id FROM access_tokens WHERE user_id = :u AND revoked_at IS NULL",
            u=alice.user.id,
        )
        assert live == []
        pending = rows(
            services,
            "SELECT id FROM authorization_codes WHERE user_id = :u AND consumed_at IS NULL",
            u=alice.user.id,
        )
        assert pending == []
    events, _ = services.store.list_audit(AuditQuery(action="user.grants_revoked"))
    assert [(e.target_id, e.details) for e in events] == [
        (alice.user.id, {"reason": reason, "grants": 2, "codes": 2})
    ]
    assert events[0].actor_id == world.admin.user.id
    # Someone else's grant for the same app lives on.
    assert_alive(world.http, bystander, world.introspector)


def test_removing_admin_rights_ends_the_grants_that_carry_them(
    world: World, services: Services, settings: Settings
) -> None:
    boss = make_account(services, "boss", admin=True)
    console_app = make_client(services, name="Admin CLI")
    # Opened to authgate's own administrative scope by the operator.
    marked = dataclasses.replace(console_app.app, admin_access=True)
    services.store.update_app(marked)
    own_api = services.ctx.policy.audience
    with world.browser(boss) as browser:
        administering = hold(browser, world.http, console_app, own_api, "admin")
        reading = hold(browser, world.http, world.app, MCP, "read")
    resp = world.http.get(
        f"{API}/users", headers={"Authorization": f"Bearer {administering.access}"}
    )
    assert resp.status_code == 200, resp.text  # the token administers authgate

    api_demote(world, boss.user.id)

    before = snapshot(services)
    assert_ended(world.http, administering, console_app)
    assert snapshot(services) == before
    resp = world.http.get(
        f"{API}/users", headers={"Authorization": f"Bearer {administering.access}"}
    )
    assert resp.status_code == 401, resp.text
    scopes = dict(grants_of(services, boss.user.id))
    assert scopes["admin"] is not None and scopes["read"] is None
    events, _ = services.store.list_audit(AuditQuery(action="user.grants_revoked"))
    assert [(e.target_id, e.details) for e in events] == [
        (boss.user.id, {"reason": "admin_removed", "grants": 1, "codes": 1})
    ]
    # The grant without administrative scope lives on.
    assert_alive(world.http, reading, world.introspector)


def test_a_grant_that_survived_is_refused_while_the_user_is_disabled(
    world: World, services: Services, alice: Account
) -> None:
    """Defence in depth: should a revocation have been lost (the user row changed by hand, a
    crash between the two writes), refresh and introspection read the user row too."""
    with world.browser(alice) as browser:
        held = hold(browser, world.http, world.app, MCP, "read")
    user = services.store.get_user(alice.user.id)
    assert user is not None
    services.store.update_user(dataclasses.replace(user, disabled=True))  # grants untouched
    before = snapshot(services)

    resp = refresh(world.http, held.refresh, client_id=world.app.id, client_secret=world.app.secret)
    assert_oauth_error(resp, 400, "invalid_grant", "The refresh token is invalid or expired")
    for who, value in ((world.introspector, held.access), (world.app, held.refresh)):
        assert introspection(world.http, who, value).json() == {"active": False}
    assert snapshot(services) == before
    assert all(revoked is None for _, revoked in grants_of(services, alice.user.id))

    # Enabled again (without a new grant revocation), the surviving grant works again.
    services.store.update_user(dataclasses.replace(user, disabled=False))
    assert_alive(world.http, held, world.introspector)


def test_self_lockout_and_unknown_users_are_refused(world: World, alice: Account) -> None:
    resp = _api(world, "DELETE", f"/users/{world.admin.user.id}")
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert world.services.store.get_user(world.admin.user.id) is not None
    assert _api(world, "DELETE", "/users/nobody").status_code == 404
    # Without administrator rights: refused, nothing deleted.
    bob = make_account(world.services, "bob", admin=False)
    resp = world.http.delete(
        f"{API}/users/{world.admin.user.id}",
        headers={"Authorization": f"Bearer {bob.api_token}"},
    )
    assert resp.status_code == 403, resp.text
    assert world.services.store.get_user(world.admin.user.id) is not None


# Two nodes on one PostgreSQL database: the change made through node A is what node B reads.


def _other_node(deployment: Deployment, name: str) -> Node:
    port = free_port()
    args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = deployment.processes.start(args, deployment.env, deployment.workdir, name)
    node = Node(f"http://127.0.0.1:{port}", proc)
    wait_ready(node, name)
    return node


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Deployment, Node, Node]]:
    with fresh_pg_database(PG_URL, "authgate_users") as url:
        processes = Processes()
        try:
            deployment = provision(url, tmp_path, processes)
            a = deployment.start("a")
            b = _other_node(deployment, "b")
            yield deployment, a, b
        finally:
            processes.stop_all()


@pytest.mark.slow
@pytest.mark.postgres
def test_disabled_on_node_a_is_refused_by_node_b_at_once(
    two_nodes: tuple[Deployment, Node, Node],
) -> None:
    deployment, a, b = two_nodes
    env = deployment.env
    run_cli(env, "users", "create", "--username", "alice", "--password", PASSWORD)
    admin_token = run_cli(env, "tokens", "create", "--user", "admin", "--name", "t")["token"]
    with httpx.Client(base_url=b.url, follow_redirects=False, timeout=30) as browser:
        sign_in(browser, "alice")
        first, later = generate_pkce(), generate_pkce()
        code = sign_in_and_allow(
            b, deployment.issuer, deployment.web[0], first.challenge, browser=browser
        )
        pending = sign_in_and_allow(
            b, deployment.issuer, deployment.web[0], later.challenge, browser=browser
        )
    issued = token(
        b,
        deployment.web,
        grant_type="authorization_code",
        code=code,
        code_verifier=first.verifier,
        redirect_uri=REDIRECT_URI,
    )
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    # Node B has read (and could have cached) the live grant.
    assert introspect(b, deployment.web, tokens["access_token"])["active"] is True
    assert introspect(b, deployment.web, tokens["refresh_token"])["active"] is True

    disabled = httpx.patch(
        f"{a.url}/api/v2/users/alice",
        json={"disabled": True},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    assert disabled.status_code == 200, disabled.text

    # At once, on the other node: no waiting, no retry.
    refreshed = token(
        b, deployment.web, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")
    assert introspect(b, deployment.web, tokens["access_token"]) == {"active": False}
    assert introspect(b, deployment.web, tokens["refresh_token"]) == {"active": False}
    redeemed = token(
        b,
        deployment.web,
        grant_type="authorization_code",
        code=pending,
        code_verifier=later.verifier,
        redirect_uri=REDIRECT_URI,
    )
    assert_oauth_error(redeemed, 400, "invalid_grant")
    engine = sa.create_engine(
        env["AUTHGATE_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.connect() as conn:
        states = (
            conn.execute(
                sa.text(
                    "SELECT g.revoked_at IS NOT NULL FROM grants g "
                    "JOIN users u ON u.id = g.user_id WHERE u.username = 'alice'"
                )
            )
            .scalars()
            .all()
        )
        assert states == [True]
        live = conn.execute(
            sa.text(
                "SELECT count(*) FROM refresh_tokens r JOIN users u ON u.id = r.user_id "
                "WHERE u.username = 'alice' AND r.revoked_at IS NULL"
            )
        ).scalar_one()
        assert live == 0
    engine.dispose()
