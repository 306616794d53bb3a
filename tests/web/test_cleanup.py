"""The background cleanup (core/cleanup.py, web/background.py, `authgate db cleanup`): expired
rows go in batches after the retention, live ones stay and keep working."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import cleanup
from authgate.web.background import cleanup_once
from authgate.web.metrics import Metrics
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    authorize,
    exchange_code,
    generate_pkce,
    refresh,
    token_request,
)

TABLES = ("sessions", "authorization_codes", "grants", "access_tokens", "refresh_tokens")


def counts(services: Services) -> dict[str, int]:
    with services.store.engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def run(services: Services, retention: timedelta = timedelta(0)) -> cleanup.CleanupReport:
    return cleanup.run(services.ctx, retention=retention, batch_size=2, max_batches=50)


def user_flow(signed_in: TestClient, app: Client) -> dict[str, str]:
    pkce = generate_pkce()
    code = authorize(signed_in, app.id, challenge=pkce.challenge)
    resp = exchange_code(
        signed_in, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, str] = resp.json()
    return body


def machine_token(client: TestClient, services: Services) -> str:
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={RESOURCE: []},
    )
    resp = token_request(
        client,
        {"grant_type": "client_credentials", "resource": RESOURCE},
        basic=(app.id, app.secret or ""),
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def test_expired_rows_go_live_ones_stay_and_work(
    signed_in: TestClient,
    confidential: Client,
    services: Services,
    clock: MovableClock,
) -> None:
    first = user_flow(signed_in, confidential)
    machine_token(signed_in, services)
    before = counts(services)
    assert before == {
        "sessions": 1,
        "authorization_codes": 1,
        "grants": 1,  # the user's: a client_credentials token belongs to no grant
        "access_tokens": 2,
        "refresh_tokens": 1,
    }
    assert run(services).total == 0  # nothing has expired yet

    clock.advance(hours=2)  # past the code (10 min) and the access tokens (1 h)
    # Within the retention nothing goes.
    assert run(services, retention=timedelta(days=1)).total == 0
    report = run(services)
    assert report.deleted == {
        "sessions": 0,
        "codes": 1,
        "access_tokens": 2,
        "refresh_tokens": 0,
        "grants": 0,  # the user's lives on through its refresh token
        "upstream_transactions": 0,
        "clients": 0,
    }
    assert report.complete
    assert counts(services) == before | {"authorization_codes": 0, "access_tokens": 0}
    # The grant lives on through its refresh token.
    resp = refresh(
        signed_in,
        first["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert resp.status_code == 200, resp.text

    clock.advance(days=31)  # past the session (12 h) and every refresh token (30 days)
    report = run(services)
    assert report.deleted["sessions"] == 1
    assert report.deleted["access_tokens"] == 1  # the one the refresh above issued
    assert report.deleted["refresh_tokens"] == 2  # the rotated one and its successor
    assert report.deleted["grants"] == 1
    assert counts(services) == dict.fromkeys(TABLES, 0)
    # A purged refresh token is just unknown.
    resp = refresh(
        signed_in,
        resp.json()["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_oauth_error(resp, 400, "invalid_grant")


def test_a_pass_stops_after_max_batches_and_says_so(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    for _ in range(5):
        machine_token(client, services)
    clock.advance(hours=2)
    partial = cleanup.run(services.ctx, retention=timedelta(0), batch_size=2, max_batches=2)
    assert partial.deleted["access_tokens"] == 4 and not partial.complete
    rest = cleanup.run(services.ctx, retention=timedelta(0), batch_size=2, max_batches=2)
    assert rest.deleted["access_tokens"] == 1 and rest.complete


def test_cleanup_pass_counts_rows_in_metrics(
    client: TestClient, services: Services, settings: Settings, clock: MovableClock
) -> None:
    machine_token(client, services)
    clock.advance(days=2)
    metrics = Metrics()
    asyncio.run(cleanup_once(services.ctx, settings, metrics))
    value = metrics.registry.get_sample_value(
        "authgate_cleanup_deleted_rows_total", {"kind": "access_tokens"}
    )
    assert value == 1.0
    assert counts(services)["access_tokens"] == 0


def test_the_served_app_cleans_in_the_background(
    settings: Settings, services: Services, clock: MovableClock, alice: Account
) -> None:
    """What `authgate serve` runs: the lifespan starts the loop, and stops it on shutdown."""
    settings = settings.model_copy(
        update={"cleanup_interval_seconds": 1, "cleanup_retention_seconds": 0}
    )
    app = create_app(settings, services=services, background=True)
    with TestClient(app, base_url=ISSUER) as client:
        machine_token(client, services)
        clock.advance(hours=2)
        sample = 'authgate_cleanup_deleted_rows_total{kind="access_tokens"} 1.0'
        deadline = time.monotonic() + 15
        while sample not in client.get("/metrics").text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sample in client.get("/metrics").text
        assert counts(services)["access_tokens"] == 0
