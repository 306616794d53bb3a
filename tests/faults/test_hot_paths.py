"""Every statement of the hot paths fails at the driver, on SQLite and PostgreSQL.

The hot store methods run on the DBAPI connection (``SqlBase._raw_transaction``): on a SQLite
file each write joins a group commit (``writer_lock.py``), on PostgreSQL a single write runs in
autocommit mode. The outage fixture fails them at the sqlite3/psycopg connection, so each case
goes through that code's own recovery. For each statement of a path (listed per backend below,
and checked against what actually runs): the answer is a 503 in the path's shape, the database
holds what was committed when the statement failed (its transaction rolled back, nothing after
it ran), and the same request succeeds once the database answers again.

The rate-limit counter, the client's authentication read and the touch of its secret come
before every token request; they are failed here in a client_credentials request (the code
and refresh paths are in test_database_outage.py).
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.models import AuditQuery
from tests.conftest import ISSUER, Client, issued, make_client
from tests.faults.conftest import Committed, Outage
from tests.faults.test_database_outage import (
    BEFORE_REDEEM,
    REDEEM,
    ROTATE,
    Statement,
    assert_unavailable,
    fail_on,
    introspect,
    new_code,
    per_backend,
    redeem,
)
from tests.flows import (
    assert_token_response,
    authorize_url,
    callback_params,
    csrf_from,
    generate_pkce,
    refresh,
    token_request,
)
from tests.http_types import Response

# A fresh service's first token: the rate-limit hit (the upsert, then the purge of old windows
# on the window's first hit), the client's authentication read, its secret's first use, the
# resource's read (until it is cached), the token. On SQLite the client cache first reads the
# count of client changes.
CLIENT_CREDENTIALS: dict[str, list[Statement]] = {
    "sqlite": [
        ("BEGIN IMMEDIATE", 1),
        "INSERT INTO rate_limits",
        "DELETE FROM rate_limits",
        ("COMMIT", 1),
        "SELECT client_changes.generation",
        "SELECT apps.id",
        ("BEGIN IMMEDIATE", 2),
        "UPDATE app_secrets",
        ("COMMIT", 2),
        "BEGIN DEFERRED",
        "SELECT resources",
        ("COMMIT", 3),
        ("BEGIN IMMEDIATE", 3),
        "INSERT INTO access_tokens",
        ("COMMIT", 4),
    ],
    "postgres": [
        "INSERT INTO rate_limits",
        "DELETE FROM rate_limits",
        ("COMMIT", 1),
        "SELECT apps.id",
        "UPDATE app_secrets",
        "SELECT resources",
        ("COMMIT", 2),
        "INSERT INTO access_tokens",
    ],
}
#: After the token was committed: the app's last use, bookkeeping whose failure is only logged
#: (test_database_outage.py).
TOUCH = {
    "sqlite": ["BEGIN IMMEDIATE", "UPDATE apps SET last_used_at", "COMMIT"],
    "postgres": ["UPDATE apps SET last_used_at", "COMMIT"],
}
# Revoking an access token: the lookup, then the revocation and its audit event in one
# transaction (on PostgreSQL one autocommitted statement).
REVOKE: dict[str, list[Statement]] = {
    "sqlite": [
        "SELECT client_changes.generation",
        "SELECT access_tokens.id",
        "BEGIN IMMEDIATE",
        "UPDATE access_tokens",
        "INSERT INTO audit_log",
        "COMMIT",
    ],
    "postgres": ["SELECT access_tokens.id", "WITH revoked AS (UPDATE access_tokens"],
}
# The user allows: the session's read, the code, then the consent's audit event (appended on
# its own, in autocommit mode on PostgreSQL).
CONSENT_READS = {
    "sqlite": [
        "BEGIN DEFERRED",
        "SELECT sessions",
        "COMMIT",
        "SELECT users",
        "SELECT client_changes.generation",
    ],
    "postgres": ["SELECT sessions", "COMMIT", "SELECT users"],
}
CONSENT_WRITES: dict[str, list[Statement]] = {
    "sqlite": [
        ("BEGIN IMMEDIATE", 1),
        "INSERT INTO authorization_codes",
        ("COMMIT", 2),
        ("BEGIN IMMEDIATE", 2),
        "INSERT INTO audit_log",
        ("COMMIT", 3),
    ],
    "postgres": ["INSERT INTO authorization_codes", ("COMMIT", 2), "INSERT INTO audit_log"],
}


def backend_of(services: Services) -> str:
    return "sqlite" if services.store.engine.dialect.name == "sqlite" else "postgres"


def prefixes(listed: list[Statement]) -> list[str]:
    return [s if isinstance(s, str) else s[0] for s in listed]


#: The client's read, where the client cache has it: whether it runs on PostgreSQL depends on
#: when the change notification of a client created just before reaches the cache.
CLIENT_READ = "SELECT apps.id"


def assert_ran(outage: Outage, expected: list[str], *, cached_client: bool = False) -> None:
    """The driver ran exactly these statements (by prefix), in this order."""
    ran = outage.seen
    if cached_client:
        ran = [s for s in ran if not s.upper().startswith(CLIENT_READ.upper())]
    assert len(ran) == len(expected), "\n".join(s[:60] for s in ran)
    for statement, prefix in zip(ran, expected, strict=True):
        assert statement.upper().startswith(prefix.upper()), (statement, prefix)


def new_service(services: Services) -> Client:
    return make_client(
        services, name="Service", grant_types=["client_credentials"], service_access={ISSUER: []}
    )


def client_credentials(client: TestClient, service: Client) -> Response:
    assert service.secret is not None
    return token_request(
        client, {"grant_type": "client_credentials"}, basic=(service.id, service.secret)
    )


def revoke(client: TestClient, service: Client, value: str) -> Response:
    assert service.secret is not None
    return client.post("/oauth2/revoke", data={"token": value}, auth=(service.id, service.secret))


def consent_form(signed_in: TestClient, app: Client) -> tuple[str, dict[str, str]]:
    url = authorize_url(app.id, challenge=generate_pkce().challenge)
    page = signed_in.get(url, follow_redirects=False)
    assert page.status_code == 200, page.text
    return url, {"csrf_token": csrf_from(page), "decision": "allow"}


def consents(services: Services, app_id: str) -> int:
    events, _ = services.store.list_audit(AuditQuery(action="consent.granted"))
    return sum(1 for e in events if e.target_id == app_id)


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_listed_statements_are_the_ones_that_run(
    signed_in: TestClient, services: Services, outage: Outage
) -> None:
    """The lists above name every statement of each path, so that none is left unfailed."""
    backend = backend_of(services)
    service = new_service(services)
    outage.seen.clear()
    token = assert_token_response(client_credentials(signed_in, service))
    assert_ran(outage, prefixes(CLIENT_CREDENTIALS[backend]) + TOUCH[backend])

    outage.seen.clear()
    assert revoke(signed_in, service, token["access_token"]).status_code == 200
    assert_ran(outage, prefixes(REVOKE[backend]), cached_client=True)

    app = make_client(services, name="Consented app")
    url, form = consent_form(signed_in, app)
    outage.seen.clear()
    allowed = signed_in.post(url, data=form, follow_redirects=False)
    assert "code" in callback_params(allowed)
    expected = CONSENT_READS[backend] + prefixes(CONSENT_WRITES[backend])
    assert_ran(outage, expected, cached_client=True)

    # test_database_outage.py's lists: a fresh client's redemption runs the rate-limit hit,
    # the client's read and its secret's touch first, as client_credentials does.
    code, verifier = new_code(signed_in, app)
    outage.seen.clear()
    tokens = assert_token_response(redeem(signed_in, app, code, verifier))
    authenticated = CLIENT_CREDENTIALS[backend][: -6 if backend == "sqlite" else -3]
    redemption = REDEEM[backend][len(BEFORE_REDEEM) :]
    assert_ran(outage, prefixes(authenticated + redemption) + TOUCH[backend])
    outage.seen.clear()
    rotated = refresh(
        signed_in, tokens["refresh_token"], client_id=app.id, client_secret=app.secret
    )
    assert_token_response(rotated)
    cache_check = ["SELECT client_changes.generation"] if backend == "sqlite" else []
    assert_ran(outage, cache_check + prefixes(ROTATE[backend]), cached_client=True)


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(
    ("database_url", "statement"), per_backend(CLIENT_CREDENTIALS), indirect=["database_url"]
)
def test_client_credentials_interrupted_at_any_statement(
    client: TestClient,
    services: Services,
    outage: Outage,
    committed: Committed,
    statement: Statement,
) -> None:
    service = new_service(services)
    before = issued(services, service.id)

    prefix = fail_on(outage, statement)
    resp = client_credentials(client, service)
    assert outage.fired == [prefix], "the statement under test never ran"
    assert_unavailable(resp)
    assert committed() == outage.at_failure
    assert issued(services, service.id) == before

    outage.heal()
    token = assert_token_response(client_credentials(client, service))
    assert introspect(client, service, token["access_token"])["active"] is True
    assert issued(services, service.id).access == before.access + 1
    secret = services.store.list_secrets(service.id)[0]
    assert secret.last_used_at is not None


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(
    ("database_url", "statement"), per_backend(REVOKE), indirect=["database_url"]
)
def test_revocation_interrupted_revokes_nothing_and_records_nothing(
    client: TestClient,
    services: Services,
    outage: Outage,
    committed: Committed,
    statement: Statement,
) -> None:
    service = new_service(services)
    value = assert_token_response(client_credentials(client, service))["access_token"]
    revoked_events = len(services.store.list_audit(AuditQuery(action="token.revoked"))[0])

    prefix = fail_on(outage, statement)
    resp = revoke(client, service, value)
    assert outage.fired == [prefix], "the statement under test never ran"
    assert_unavailable(resp)
    assert committed() == outage.at_failure
    assert introspect(client, service, value)["active"] is True
    assert len(services.store.list_audit(AuditQuery(action="token.revoked"))[0]) == revoked_events

    outage.heal()
    again = revoke(client, service, value)
    assert again.status_code == 200, again.text
    assert introspect(client, service, value)["active"] is False
    events, _ = services.store.list_audit(AuditQuery(action="token.revoked"))
    assert len(events) == revoked_events + 1


@pytest.mark.usefixtures("real_kill")
@pytest.mark.parametrize(
    ("database_url", "statement"), per_backend(CONSENT_WRITES), indirect=["database_url"]
)
def test_consent_interrupted_answers_a_503_page_and_the_next_try_works(
    signed_in: TestClient,
    services: Services,
    outage: Outage,
    committed: Committed,
    statement: Statement,
) -> None:
    """The consent's audit event is appended after its code was written: a failure there
    leaves a code that no client ever received, and no event."""
    app = make_client(services, name="Consented app")
    url, form = consent_form(signed_in, app)
    before = consents(services, app.id)

    prefix = fail_on(outage, statement)
    page = signed_in.post(url, data=form, follow_redirects=False)
    assert outage.fired == [prefix], "the statement under test never ran"
    assert page.status_code == 503, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert int(page.headers["retry-after"]) > 0
    assert 'id="error-code">temporarily_unavailable<' in page.text
    assert committed() == outage.at_failure
    assert consents(services, app.id) == before

    outage.heal()
    url, form = consent_form(signed_in, app)
    assert "code" in callback_params(signed_in.post(url, data=form, follow_redirects=False))
    assert consents(services, app.id) == before + 1
