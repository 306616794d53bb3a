"""``private_key_jwt`` against a real OpenID Provider (node-oidc-provider): authgate signs a
person in with a client assertion the provider verifies with the keys authgate publishes at
``/login/upstream/{id}/jwks``, over real HTTPS; an assertion the provider cannot accept (a key
rotated in authgate after the provider took the old one, an ``aud`` it does not take) ends the
sign-in with ``token_exchange_failed`` and creates no one. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.testclient import TestClient

from authgate.core.context import SYSTEM
from authgate.core.models import AuditEvent, AuditQuery
from authgate.core.upstream import providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.services import Services
from tests.upstream import provider
from tests.upstream.conftest import callback_url, sign_in

DANA = {"email": "dana@example.com", "email_verified": True, "name": "Dana Keyed"}


def audit(services: Services, action: str) -> list[AuditEvent]:
    events, _ = services.store.list_audit(AuditQuery(action=action, limit=100))
    return list(events)


def keyed_provider(
    client: TestClient,
    services: Services,
    op: provider.OpenIdProvider,
    provider_id: str,
    *,
    audience: str = "token_endpoint",
    strict_audience: bool = False,
) -> dict[str, Any]:
    """Add a private_key_jwt provider in authgate and register authgate's published JWK Set
    at the provider for a new client id; that JWK Set."""
    client_id = f"authgate-{secrets.token_hex(4)}"
    spec = ProviderSpec(
        id=provider_id,
        display_name="Keyed",
        issuer=op.issuer,
        client_id=client_id,
        token_auth_method="private_key_jwt",
        assertion_audience=audience,
        jit_create=True,
    )
    providers.create_provider(services.ctx, SYSTEM, spec)
    published = client.get(f"/login/upstream/{provider_id}/jwks")
    assert published.status_code == 200, published.text
    assert published.headers["cache-control"] == "public, max-age=300"
    jwks: dict[str, Any] = published.json()
    op.set_client(client_id, jwks, [callback_url(provider_id)], strict_audience=strict_audience)
    return jwks


def test_a_person_signs_in_through_a_provider_that_verifies_authgates_assertion(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("dana-sub", DANA)
    jwks = keyed_provider(client, services, op, "entra", strict_audience=True)
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key

    done = sign_in(client, op, "entra", "dana-sub")
    assert done.status_code == 303, done.text
    assert "authgate_session" in client.cookies
    [user] = [u for u in services.store.list_users() if u.email == "dana@example.com"]
    assert user.name == "Dana Keyed" and user.email_verified
    identity = services.store.get_upstream_identity("entra", "dana-sub")
    assert identity is not None and identity.user_id == user.id
    [logged] = audit(services, "upstream.logged_in")
    assert logged.target_id == user.id
    assert logged.details == {"provider": "entra", "idp": op.issuer}
    assert audit(services, "upstream.sign_in_refused") == []


def test_the_issuer_as_audience_is_accepted_where_the_provider_takes_it(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("erin-sub", {"email": "erin@example.com", "email_verified": True})
    keyed_provider(client, services, op, "keycloak", audience="issuer")
    assert sign_in(client, op, "keycloak", "erin-sub").status_code == 303
    assert services.store.get_upstream_identity("keycloak", "erin-sub") is not None


def test_an_audience_the_provider_refuses_ends_the_sign_in_and_creates_no_one(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("fay-sub", {"email": "fay@example.com", "email_verified": True})
    keyed_provider(client, services, op, "entra", audience="issuer", strict_audience=True)
    users = services.store.count_users()
    resp = sign_in(client, op, "entra", "fay-sub")
    assert resp.status_code == 403, resp.text
    assert "You could not be signed in" in resp.text
    assert "authgate_session" not in client.cookies
    assert services.store.count_users() == users
    assert services.store.get_upstream_identity("entra", "fay-sub") is None
    [refused] = audit(services, "upstream.sign_in_refused")
    assert refused.details == {"reason": "token_exchange_failed"}


def test_a_key_rotated_after_the_provider_took_the_old_one_is_refused_until_it_learns_it(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("gus-sub", {"email": "gus@example.com", "email_verified": True})
    before = keyed_provider(client, services, op, "okta")
    rotated = providers.rotate_assertion_key(services.ctx, SYSTEM, "okta")
    after = client.get("/login/upstream/okta/jwks").json()
    assert after["keys"][0]["kid"] != before["keys"][0]["kid"]
    [event] = audit(services, "upstream_provider.key_rotated")
    assert event.details["previous_kid"] == before["keys"][0]["kid"]
    assert event.details["kid"] == after["keys"][0]["kid"]

    # The provider still holds the old key: the new assertion does not verify.
    users = services.store.count_users()
    resp = sign_in(client, op, "okta", "gus-sub")
    assert resp.status_code == 403, resp.text
    assert services.store.count_users() == users
    assert services.store.get_upstream_identity("okta", "gus-sub") is None
    [refused] = audit(services, "upstream.sign_in_refused")
    assert refused.details == {"reason": "token_exchange_failed"}

    # Given the new JWK Set (as a provider reading the JWKS URL again would be), it signs in.
    op.set_client(rotated.client_id, after, [callback_url("okta")])
    client.cookies.clear()
    assert sign_in(client, op, "okta", "gus-sub").status_code == 303
    assert services.store.get_upstream_identity("okta", "gus-sub") is not None
