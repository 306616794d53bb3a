"""The database fails in the middle of a request (in-process, SQLite and PostgreSQL).

The database driver (tests/faults/conftest.py) makes one chosen statement, or the COMMIT,
fail with its own `OperationalError` (on PostgreSQL for real: the backend is terminated with
`pg_terminate_backend` from another connection just before the statement runs), so the hot
paths on the DBAPI connection meet it. Whatever statement fails:

- the OAuth endpoints answer 503 `temporarily_unavailable` as RFC 6749 §5.2 JSON with
  `Cache-Control: no-store` and a positive `Retry-After`; `/api/` answers RFC 9457
  problem+json 503; a page answers an HTML error page 503;
- nothing is half-written: the store method's transaction rolled back (on the token paths
  the database holds exactly what was committed when the statement failed), so the counts of
  codes, grants and tokens are what they were, the code is still redeemable exactly once and
  the refresh token still rotates once;
- the service resumes as soon as the database answers again, without a restart.

A failure after the tokens were committed (the app's `last_used_at` touch) must not turn the
issuance into a 503: the client would retry a consumed code, which is a replay and revokes
the grant it was just given.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_client
from tests.faults.conftest import Committed, Outage
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    exchange_code,
    generate_pkce,
    refresh,
    token_request,
)
from tests.http_types import Response

# Before the redemption's transaction: the rate-limit hit and the secret's last use (every
# statement of those is failed in test_hot_paths.py).
BEFORE_REDEEM = ["INSERT INTO rate_limits", "UPDATE app_secrets"]
# store.get_code_by_prefix(), then store.redeem_code(): one transaction. On SQLite one
# statement per row, inside the group commit's BEGIN IMMEDIATE … COMMIT; on PostgreSQL the
# claim and its inserts are one statement, then the COMMIT.
REDEEM: dict[str, list[Statement]] = {
    "sqlite": [
        *BEFORE_REDEEM,
        "SELECT authorization_codes",
        ("BEGIN IMMEDIATE", 3),
        "UPDATE authorization_codes",
        "INSERT INTO grants",
        "INSERT INTO access_tokens",
        "INSERT INTO refresh_tokens",
        ("COMMIT", 3),
    ],
    "postgres": [
        *BEFORE_REDEEM,
        "SELECT authorization_codes",
        "WITH claimed AS (UPDATE authorization_codes",
        ("COMMIT", 2),
    ],
}
# store.get_refresh_token_and_grant(), then store.rotate_refresh_token().
ROTATE: dict[str, list[Statement]] = {
    "sqlite": [
        "SELECT refresh_tokens.id",
        "BEGIN IMMEDIATE",
        "SELECT refresh_tokens.grant_id",
        "SELECT grants.id",
        "UPDATE refresh_tokens",
        "INSERT INTO access_tokens",
        "INSERT INTO refresh_tokens",
        "COMMIT",
    ],
    "postgres": ["SELECT refresh_tokens.id", "WITH claimed AS (UPDATE refresh_tokens", "COMMIT"],
}
#: A statement, or (statement, n): the n-th statement starting so in the request.
Statement = str | tuple[str, int]


def per_backend(statements: dict[str, list[Statement]]) -> list[Any]:
    """(database_url, statement) cases: each backend with the statements it runs."""
    return [
        pytest.param(
            backend,
            statement,
            marks=[pytest.mark.postgres] if backend == "postgres" else [],
            id=f"{backend}-{name(statement)}",
        )
        for backend, listed in statements.items()
        for statement in listed
    ]


def name(statement: Statement) -> str:
    return statement if isinstance(statement, str) else f"{statement[0]}-{statement[1]}"


def fail_on(outage: Outage, statement: Statement) -> str:
    """Make ``statement`` fail; the prefix that ``outage.fired`` will name."""
    prefix, nth = (statement, 1) if isinstance(statement, str) else statement
    outage.fail_on(prefix, nth=nth)
    return prefix


def assert_unavailable(resp: Response) -> dict[str, Any]:
    body = assert_oauth_error(resp, 503, "temporarily_unavailable")
    assert int(resp.headers["retry-after"]) > 0, resp.headers
    return body


def new_code(signed_in: TestClient, client: Client) -> tuple[str, str]:
    pkce = generate_pkce()
    return authorize(signed_in, client.id, challenge=pkce.challenge), pkce.verifier


def redeem(signed_in: TestClient, client: Client, code: str, verifier: str) -> Response:
    return exchange_code(
        signed_in, code, client_id=client.id, client_secret=client.secret, verifier=verifier
    )


def introspect(client: TestClient, caller: Client, value: str) -> dict[str, Any]:
    resp = client.post(
        "/oauth2/introspect", data={"token": value}, auth=(caller.id, caller.secret or "")
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(
    ("database_url", "statement"), per_backend(REDEEM), indirect=["database_url"]
)
def test_code_redemption_interrupted_leaves_the_code_redeemable_once(
    signed_in: TestClient,
    services: Services,
    outage: Outage,
    committed: Committed,
    statement: Statement,
) -> None:
    # A fresh confidential client: its secret's first use is written (`UPDATE app_secrets`).
    client = make_client(services, name="Fresh app")
    code, verifier = new_code(signed_in, client)
    before = issued(services, client.id)

    prefix = fail_on(outage, statement)
    resp = redeem(signed_in, client, code, verifier)
    assert outage.fired == [prefix], "the statement under test never ran"
    assert_unavailable(resp)
    assert issued(services, client.id) == before
    assert committed() == outage.at_failure

    outage.heal()
    body = assert_token_response(redeem(signed_in, client, code, verifier))
    assert introspect(signed_in, client, body["access_token"])["active"] is True
    assert introspect(signed_in, client, body["refresh_token"])["active"] is True
    after = issued(services, client.id)
    assert (after.grants, after.access, after.refresh, after.consumed_codes) == (
        before.grants + 1,
        before.access + 1,
        before.refresh + 1,
        before.consumed_codes + 1,
    )
    replay = redeem(signed_in, client, code, verifier)
    assert_oauth_error(replay, 400, "invalid_grant")


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(
    ("database_url", "statement"), per_backend(ROTATE), indirect=["database_url"]
)
def test_refresh_rotation_interrupted_leaves_the_refresh_token_valid(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    outage: Outage,
    committed: Committed,
    statement: Statement,
) -> None:
    code, verifier = new_code(signed_in, confidential)
    tokens = assert_token_response(redeem(signed_in, confidential, code, verifier))
    before = issued(services, confidential.id)

    prefix = fail_on(outage, statement)
    resp = refresh(
        signed_in,
        tokens["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert outage.fired == [prefix], "the statement under test never ran"
    assert_unavailable(resp)
    assert issued(services, confidential.id) == before
    assert committed() == outage.at_failure

    outage.heal()
    assert introspect(signed_in, confidential, tokens["refresh_token"])["active"] is True
    rotated = refresh(
        signed_in,
        tokens["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    new = assert_token_response(rotated)
    assert new["refresh_token"] != tokens["refresh_token"]
    assert introspect(signed_in, confidential, new["access_token"])["active"] is True
    assert introspect(signed_in, confidential, tokens["access_token"])["active"] is True
    after = issued(services, confidential.id)
    assert (after.access, after.refresh) == (before.access + 1, before.refresh + 1)


@pytest.mark.usefixtures("real_kill")
def test_client_credentials_interrupted_issues_nothing(
    client: TestClient, services: Services, outage: Outage
) -> None:
    service = make_client(
        services,
        name="Service",
        grant_types=["client_credentials"],
        service_access={ISSUER: []},
    )
    data = {"grant_type": "client_credentials"}
    assert service.secret is not None
    creds = (service.id, service.secret)
    first = assert_token_response(token_request(client, data, basic=creds))
    before = issued(services, service.id)

    outage.fail_on("INSERT INTO access_tokens")
    resp = token_request(client, data, basic=creds)
    assert outage.fired == ["INSERT INTO access_tokens"]
    assert_unavailable(resp)
    assert issued(services, service.id) == before

    outage.heal()
    second = assert_token_response(token_request(client, data, basic=creds))
    assert introspect(client, service, first["access_token"])["active"] is True
    assert introspect(client, service, second["access_token"])["active"] is True
    assert issued(services, service.id).access == before.access + 1


def test_failed_touch_after_commit_still_returns_the_tokens(
    signed_in: TestClient,
    services: Services,
    outage: Outage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The touch of `apps.last_used_at` runs after the tokens were committed: it is
    bookkeeping, so its failure is logged and the client gets the tokens it was issued."""
    client = make_client(services, name="Never used")
    code, verifier = new_code(signed_in, client)
    outage.fail_on("UPDATE apps SET last_used_at")
    with caplog.at_level(logging.WARNING, logger="authgate.token"):
        resp = redeem(signed_in, client, code, verifier)
    assert outage.fired == ["UPDATE apps SET last_used_at"]
    body = assert_token_response(resp)
    assert any("could not record the use" in r.getMessage() for r in caplog.records)
    assert introspect(signed_in, client, body["access_token"])["active"] is True
    found = services.store.get_app(client.id)
    assert found is not None and found.last_used_at is None


REGISTER = [
    pytest.param("INSERT INTO apps", 1, id="app"),
    pytest.param("INSERT INTO app_secrets", 1, id="secret"),
    pytest.param("INSERT INTO audit_log", 1, id="secret-audit"),
    pytest.param("INSERT INTO audit_log", 2, id="registration-audit"),
]


def registrations(services: Services) -> tuple[list[str], int, int]:
    apps = sorted(a.id for a in services.store.list_apps())
    secrets = sum(len(services.store.list_secrets(app_id)) for app_id in apps)
    events, _ = services.store.list_audit(AuditQuery(action="client.registered"))
    return apps, secrets, len(events)


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(("statement", "nth"), REGISTER)
def test_registration_interrupted_registers_nothing(
    client: TestClient, services: Services, outage: Outage, statement: str, nth: int
) -> None:
    """A registration writes the app, its secret and two audit events in separate
    transactions: whichever fails, the client gets a 503 and no app is left behind that the
    client holds no credentials for."""
    body = {"client_name": "Example client", "redirect_uris": ["https://client.example.com/cb"]}
    before = registrations(services)
    outage.fail_on(statement, nth=nth)
    resp = client.post("/oauth2/register", json=body)
    assert outage.fired == [statement], "the statement under test never ran"
    assert_unavailable(resp)
    assert registrations(services) == before

    outage.heal()
    again = client.post("/oauth2/register", json=body)
    assert again.status_code == 201, again.text
    apps, secrets, events = registrations(services)
    assert (len(apps), secrets, events) == (len(before[0]) + 1, before[1] + 1, before[2] + 1)
    assert again.json()["client_id"] in apps


def test_database_down_every_surface_answers_503_in_its_shape_then_resumes(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    admin: Any,
    outage: Outage,
    caplog: pytest.LogCaptureFixture,
    clock: MovableClock,
) -> None:
    code, verifier = new_code(signed_in, confidential)
    before = issued(services, confidential.id)
    bearer = {"Authorization": f"Bearer {admin.api_token}"}
    outage.down = True
    with caplog.at_level(logging.WARNING, logger="authgate.errors"):
        token = redeem(signed_in, confidential, code, verifier)
    assert_unavailable(token)
    assert any("database unavailable" in r.getMessage() for r in caplog.records)

    api = signed_in.get("/api/v2/users/me", headers=bearer)
    assert api.status_code == 503, api.text
    assert api.headers["content-type"] == "application/problem+json"
    assert int(api.headers["retry-after"]) > 0
    assert api.json()["status"] == 503 and api.json()["title"] == "Service Unavailable"

    pkce = generate_pkce()
    for path in ("/login", authorize_url(confidential.id, challenge=pkce.challenge)):
        page = signed_in.get(path, follow_redirects=False)
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert int(page.headers["retry-after"]) > 0
        assert 'id="error-code">temporarily_unavailable<' in page.text

    ready = signed_in.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "failed"}
    assert signed_in.get("/healthz").status_code == 200

    outage.heal()
    assert issued(services, confidential.id) == before
    # The requests' database failures keep the node unready for 5 s more (web/health.py).
    assert signed_in.get("/readyz").json()["failed"] == ["writable"]
    clock.advance(seconds=6)
    assert signed_in.get("/readyz").status_code == 200
    assert signed_in.get("/api/v2/users/me", headers=bearer).status_code == 200
    assert_token_response(redeem(signed_in, confidential, code, verifier))
