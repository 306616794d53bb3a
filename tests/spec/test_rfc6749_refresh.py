"""RFC 6749 §6 with OAuth 2.1 §4.3.1 rotation: refresh tokens rotate on every use; a reuse
within the window by the same client gets the family's current token again (no fork), a later
one revokes the family. tests/spec/test_refresh_continuity.py covers the window in depth."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_account, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
    refresh,
)


def _tokens(client: TestClient, app: Client, **kwargs: Any) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, **kwargs)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def _me(client: TestClient, token: str) -> int:
    client.cookies.clear()
    return client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_rotation(signed_in: TestClient, services: Services, confidential: Client) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in"] == 3600
    assert _me(signed_in, second["access_token"]) == 200
    state = issued(services, confidential.id)
    assert (state.access, state.refresh, state.grants) == (2, 2, 1)


def test_reuse_within_grace_continues_the_family(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    clock.advance(seconds=5)
    retry = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    # The family's current refresh token again, never a second live branch (issue 17.3).
    assert retry["refresh_token"] == second["refresh_token"]
    assert retry["access_token"] != second["access_token"]
    assert _me(signed_in, second["access_token"]) == 200
    assert _me(signed_in, retry["access_token"]) == 200
    state = issued(services, confidential.id)
    assert (state.grants, state.refresh, state.access) == (1, 2, 3)


def test_reuse_after_grace_revokes_family(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    second = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    clock.advance(seconds=121)  # past the default window (120 s)
    replay = refresh(
        signed_in,
        first["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    body = assert_oauth_error(replay, 400, "invalid_grant")
    assert body["error_description"] == "The refresh token is invalid or expired"
    assert issued(services, confidential.id).live_access == 0
    assert _me(signed_in, second["access_token"]) == 401
    # The legitimate holder's newest refresh token is dead too.
    assert_oauth_error(
        refresh(
            signed_in,
            second["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        ),
        400,
        "invalid_grant",
    )
    events, count = services.store.list_audit(AuditQuery(action="refresh_token.reused"))
    assert count == 1
    assert events[0].details["app_id"] == confidential.id
    assert first["refresh_token"] not in str(events[0].details)


def test_strict_mode_revokes_at_once(settings: Settings, clock: MovableClock) -> None:
    strict = settings.model_copy(update={"refresh_reuse_grace_seconds": 0})
    services = build_services(strict, clock=clock)
    account = make_account(services, "strict", admin=False)
    app = make_client(services)
    with TestClient(create_app(strict, services=services), base_url=ISSUER) as client:
        login(client, account.user.username, account.password)
        first = _tokens(client, app)
        assert_token_response(
            refresh(client, first["refresh_token"], client_id=app.id, client_secret=app.secret)
        )
        replay = refresh(client, first["refresh_token"], client_id=app.id, client_secret=app.secret)
        assert_oauth_error(replay, 400, "invalid_grant")
    assert issued(services, app.id).live_access == 0
    services.store.close()


MALFORMED = [
    pytest.param("1234_4321", id="6-no-scheme"),
    pytest.param("notag_1234567890_" + "a" * 46, id="6-wrong-scheme"),
    pytest.param("agrt_1234", id="6-missing-secret"),
    pytest.param("agrt__" + "a" * 46, id="6-missing-prefix"),
    pytest.param("agrt_1234567890_" + "a" * 46, id="6-unknown"),
]


@pytest.mark.parametrize("token", MALFORMED)
def test_malformed_refresh_tokens(
    signed_in: TestClient, services: Services, confidential: Client, token: str
) -> None:
    _tokens(signed_in, confidential)
    before = issued(services, confidential.id)
    resp = refresh(signed_in, token, client_id=confidential.id, client_secret=confidential.secret)
    body = assert_oauth_error(resp, 400, "invalid_grant")
    assert body["error_description"] == "The refresh token is invalid or expired"
    assert issued(services, confidential.id) == before


def test_expired_refresh_token(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    first = _tokens(signed_in, confidential)
    clock.advance(days=31)
    resp = refresh(
        signed_in,
        first["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, confidential.id).refresh == 1


def test_refresh_needs_client_authentication(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    first = _tokens(signed_in, confidential)
    for secret in (None, "agcs_wrong"):
        resp = refresh(
            signed_in, first["refresh_token"], client_id=confidential.id, client_secret=secret
        )
        assert_oauth_error(resp, 401, "invalid_client")
    assert issued(services, confidential.id).refresh == 1
    # Not consumed by the failures.
    assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )


def test_refresh_token_of_another_client(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    other = make_client(services, name="Other")
    first = _tokens(signed_in, confidential)
    resp = refresh(
        signed_in, first["refresh_token"], client_id=other.id, client_secret=other.secret
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, other.id).access == 0
    assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )


def test_scope_may_narrow_never_widen(signed_in: TestClient, services: Services) -> None:
    app = make_client(services, scope="read write")
    first = _tokens(signed_in, app, scope="read write", resource=RESOURCE)
    assert first["scope"] == "read write"
    narrow = assert_token_response(
        refresh(
            signed_in,
            first["refresh_token"],
            client_id=app.id,
            client_secret=app.secret,
            scope="read",
        )
    )
    assert narrow["scope"] == "read"
    # Once narrowed, the family cannot grow back.
    again = refresh(
        signed_in,
        narrow["refresh_token"],
        client_id=app.id,
        client_secret=app.secret,
        scope="read write",
    )
    assert_oauth_error(again, 400, "invalid_scope")
    # Names the resource does not define could never have been granted: left out, not refused
    # (RFC 6749 §3.3; clients send on refresh the scope they sent at authorization).
    kept = assert_token_response(
        refresh(
            signed_in,
            narrow["refresh_token"],
            client_id=app.id,
            client_secret=app.secret,
            scope="read offline_access admin",
        )
    )
    assert kept["scope"] == "read"


def test_public_client_refresh(signed_in: TestClient, public: Client) -> None:
    first = _tokens(signed_in, public)
    second = refresh(signed_in, first["refresh_token"], client_id=public.id, client_secret=None)
    assert_token_response(second)


def test_app_without_refresh_grant_gets_no_refresh_token(
    signed_in: TestClient, services: Services
) -> None:
    app = make_client(services, grant_types=["authorization_code"])
    body = _tokens(signed_in, app)
    assert "refresh_token" not in body
    assert issued(services, app.id).refresh == 0
