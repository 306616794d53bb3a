"""Operations: Prometheus metrics at /metrics, readiness at /readyz, and the access log line.

Metrics are read back from the exposition text, the way Prometheus reads them, and checked
against the database and the audit log where they count security events.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import keys
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, PASSWORD, Account, Client, issued
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    refresh,
)


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    assert resp.headers["cache-control"] == "no-store"
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _tokens(client: TestClient, app: Client) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def test_unknown_methods_share_one_label(client: TestClient) -> None:
    """A client may send any token as the method: it must not mint a series per token."""
    for method in ("FROBNICATE", "X-ONE", "x-two"):
        assert client.request(method, "/oauth2/tokens").status_code == 405
    assert client.post("/oauth2/tokens", data={}).status_code == 400
    samples = scrape(client)
    route = "/oauth2/tokens"
    assert (
        value(samples, "authgate_http_requests_total", route=route, method="other", status="405")
        == 3
    )
    assert (
        value(samples, "authgate_http_requests_total", route=route, method="POST", status="400")
        == 1
    )
    assert value(samples, "authgate_http_request_duration_seconds_count", route=route) == 4
    text = client.get("/metrics").text
    assert "FROBNICATE" not in text and "x-two" not in text


def test_requests_are_counted_by_route_template_not_path(client: TestClient) -> None:
    for client_id in ("one", "two"):
        resp = client.get(f"/oauth2/clients/{client_id}")
        assert resp.status_code == 401
    client.get("/no/such/page")
    samples = scrape(client)
    route = "/oauth2/clients/{client_id}"
    assert (
        value(samples, "authgate_http_requests_total", route=route, method="GET", status="401") == 2
    )
    assert (
        value(
            samples, "authgate_http_requests_total", route="unmatched", method="GET", status="404"
        )
        == 1
    )
    assert value(samples, "authgate_http_request_duration_seconds_count", route=route) == 2
    text = client.get("/metrics").text
    assert "/oauth2/clients/one" not in text and "/no/such/page" not in text
    # The error of the RFC 7592 endpoint is counted under its template too.
    assert value(samples, "authgate_oauth_errors_total", endpoint=route, error="invalid_token") == 2


def test_tokens_issued_and_oauth_errors(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    body = _tokens(signed_in, confidential)
    assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    assert_oauth_error(
        refresh(
            signed_in, "agrt_bogus", client_id=confidential.id, client_secret=confidential.secret
        ),
        400,
        "invalid_grant",
    )
    assert_oauth_error(
        signed_in.post("/oauth2/token", data={"grant_type": "password"}),
        400,
        "unsupported_grant_type",
    )
    samples = scrape(signed_in)
    assert value(samples, "authgate_tokens_issued_total", grant_type="authorization_code") == 1
    assert value(samples, "authgate_tokens_issued_total", grant_type="refresh_token") == 1
    assert (
        value(
            samples, "authgate_oauth_errors_total", endpoint="/oauth2/tokens", error="invalid_grant"
        )
        == 1
    )
    assert (
        value(
            samples,
            "authgate_oauth_errors_total",
            endpoint="/oauth2/token",
            error="unsupported_grant_type",
        )
        == 1
    )
    assert (
        value(samples, "authgate_http_request_duration_seconds_count", route="/oauth2/tokens") == 3
    )
    # Counted where the database says two token responses happened.
    assert issued(services, confidential.id).access == 2


def test_code_replay_and_refresh_reuse_match_the_audit_log(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    first = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    replay = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=pkce.verifier,
    )
    assert_oauth_error(replay, 400, "invalid_grant")
    samples = scrape(signed_in)
    assert value(samples, "authgate_authorization_code_replays_total") == 1
    assert value(samples, "authgate_refresh_token_reuse_total") == 0

    body = _tokens(signed_in, confidential)
    assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    clock.advance(seconds=121)  # past the reuse window (120 s)
    assert_oauth_error(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        ),
        400,
        "invalid_grant",
    )
    samples = scrape(signed_in)
    assert value(samples, "authgate_refresh_token_reuse_total") == 1
    assert value(samples, "authgate_authorization_code_replays_total") == 1
    for action in ("authorization_code.replayed", "refresh_token.reused"):
        _, total = services.store.list_audit(AuditQuery(action=action))
        assert total == 1, action
    assert first["access_token"]


def test_database_pool_gauge(client: TestClient) -> None:
    samples = scrape(client)
    assert ("authgate_db_pool_connections_in_use", ()) in samples
    assert samples[("authgate_db_pool_connections_in_use", ())] == 0


def test_each_app_has_its_own_registry(
    client: TestClient, settings: Settings, services: Services
) -> None:
    client.get("/healthz")
    with TestClient(create_app(settings, services=services), base_url=ISSUER) as other:
        samples = scrape(other)
    route = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(samples, "authgate_http_requests_total", **route) == 0
    assert value(scrape(client), "authgate_http_requests_total", **route) == 1


def test_metrics_can_be_switched_off(settings: Settings, services: Services) -> None:
    off = settings.model_copy(update={"metrics_enabled": False})
    app = create_app(off, services=services)
    assert not hasattr(app.state, "metrics")
    with TestClient(app, base_url=ISSUER) as test_client:
        assert test_client.get("/metrics").status_code == 404
        assert test_client.get("/healthz").json() == {"status": "ok"}


# Readiness.


def test_ready(client: TestClient) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert resp.headers["cache-control"] == "no-store"


def test_not_ready_without_the_database(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.store, "ping", lambda: False)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "unavailable",
        "failed": ["database"],
        "checks": {"database": "failed"},
    }


def test_not_ready_on_another_schema(client: TestClient) -> None:
    state = cast(Starlette, client.app).state
    state.schema_current = lambda: False
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "unavailable",
        "failed": ["schema"],
        "checks": {"database": "ok", "writable": "ok", "schema": "failed", "signing_key": "ok"},
    }
    state.schema_current = lambda: True
    assert client.get("/readyz").json() == {"status": "ok"}


def test_not_ready_without_an_active_signing_key(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = keys.current_keys(services.ctx)
    signing = keys.active(published)
    assert signing is not None
    # Only keys that do not sign (next, retiring): no JWT could be issued.
    idle = [key for key in published if key is not signing]
    monkeypatch.setattr(keys, "current_keys", lambda ctx: idle)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "unavailable",
        "failed": ["signing_key"],
        "checks": {"database": "ok", "writable": "ok", "schema": "ok", "signing_key": "failed"},
    }

    def broken(ctx: object) -> list[object]:
        raise RuntimeError("cannot load the keys")

    monkeypatch.setattr(keys, "current_keys", broken)
    assert client.get("/readyz").json()["failed"] == ["signing_key"]


# The access log.


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "authgate.access"]


def test_access_log_names_client_and_user_never_secrets(
    client: TestClient, alice: Account, confidential: Client, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.flows import login

    with caplog.at_level(logging.INFO, logger="authgate.access"):
        login(client, "alice", PASSWORD)
        pkce = generate_pkce()
        code = authorize(client, confidential.id, challenge=pkce.challenge)
        assert_token_response(
            exchange_code(
                client,
                code,
                client_id=confidential.id,
                client_secret=confidential.secret,
                verifier=pkce.verifier,
                basic=True,
            )
        )
    lines = _access_lines(caplog)
    sign_in = next(line for line in lines if line["path"] == "/login" and line["method"] == "POST")
    assert sign_in["user_id"] == alice.user.id and sign_in["status"] == 303
    assert "client_id" not in sign_in
    tokens = next(line for line in lines if line["path"] == "/oauth2/tokens")
    assert tokens["client_id"] == confidential.id and tokens["status"] == 200
    # The consent page and the decision both name the app and the person.
    steps = [line for line in lines if line["path"] == "/oauth2/authorize"]
    assert [line["method"] for line in steps] == ["GET", "POST"]
    for line in steps:
        assert line["client_id"] == confidential.id and line["user_id"] == alice.user.id, line
    everything = json.dumps(lines)
    assert confidential.secret is not None and confidential.secret not in everything
    assert code not in everything and PASSWORD not in everything
