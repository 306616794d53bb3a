"""RFC 9068 JWT access tokens and RFC 7517 JWKS, checked with an independent JOSE library
(PyJWT); key rotation with overlap across live tokens."""

from __future__ import annotations

import json
from typing import Any

import jwt as pyjwt
import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import keys, resources
from authgate.core.context import SYSTEM
from authgate.core.resources import ResourceFields
from tests.clock import MovableClock
from tests.conftest import Account, Client
from tests.flows import (
    RESOURCE,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
)


def _tokens(client: TestClient, app: Client, **kwargs: Any) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, **kwargs)
    return assert_token_response(
        exchange_code(
            client, code, client_id=app.id, client_secret=app.secret, verifier=pkce.verifier
        )
    )


def _verify(client: TestClient, token: str, audience: str = RESOURCE) -> dict[str, Any]:
    """Verify like a resource server would, with PyJWT and the published JWKS."""
    jwks = client.get("/.well-known/jwks.json").json()
    header = pyjwt.get_unverified_header(token)
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    key = pyjwt.PyJWK.from_dict(jwk)
    claims: dict[str, Any] = pyjwt.decode(
        token, key=key, algorithms=["ES256"], audience=audience, issuer="http://testserver"
    )
    return claims


def test_header_and_claims(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    body = _tokens(signed_in, confidential, resource=RESOURCE, scope="read")
    token = body["access_token"]
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = _verify(signed_in, token)
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == alice.user.id
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == confidential.id
    assert claims["scope"] == "read"
    assert claims["exp"] - claims["iat"] == 3600 == body["expires_in"]
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert len(claims["jti"]) == 22
    stored = services.store.get_access_token_by_prefix(claims["jti"])
    assert stored is not None and stored.audience == RESOURCE and stored.user_id == alice.user.id


def test_wrong_audience_fails_independent_verification(
    signed_in: TestClient, confidential: Client
) -> None:
    token = _tokens(signed_in, confidential, resource=RESOURCE)["access_token"]
    with pytest.raises(pyjwt.InvalidAudienceError):
        _verify(signed_in, token, audience="https://other.example.com")


def test_resource_ttl_and_opaque_format(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    resources.create_resource(
        services.ctx,
        SYSTEM,
        ResourceFields(identifier="https://short.example.com", name="Short", access_token_ttl=300),
    )
    short = _tokens(signed_in, confidential, resource="https://short.example.com")
    assert short["expires_in"] == 300
    claims = _verify(signed_in, short["access_token"], audience="https://short.example.com")
    assert claims["exp"] - claims["iat"] == 300
    opaque = _tokens(signed_in, confidential, resource="https://mcp.example.com/mcp")
    assert opaque["access_token"].startswith("agat_")


def test_jwks_document(client: TestClient, services: Services) -> None:
    resp = client.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "public, max-age=300"
    assert resp.headers["access-control-allow-origin"] == "*"
    document = resp.json()
    stored = services.store.list_signing_keys()
    # The active key and the pre-published next key.
    assert {k["kid"] for k in document["keys"]} == {k.kid for k in stored}
    assert len(document["keys"]) == 2
    for jwk in document["keys"]:
        assert set(jwk) >= {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert "d" not in jwk
    text = json.dumps(document)
    for key in stored:
        assert key.private_key not in text


def test_private_keys_are_encrypted_at_rest(services: Services) -> None:
    for key in services.store.list_signing_keys():
        assert "PRIVATE KEY" not in key.private_key
        assert len(key.private_key) > 100


def test_rotation_keeps_live_tokens_valid_until_they_expire(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    before = _tokens(signed_in, confidential, resource=RESOURCE)["access_token"]
    old_kid = pyjwt.get_unverified_header(before)["kid"]
    stored = services.store.list_signing_keys()
    upcoming = keys.upcoming(list(stored))
    assert upcoming is not None
    rotated = keys.rotate(services.ctx, SYSTEM)
    assert rotated.kid == upcoming.kid  # the pre-published key takes over
    services.ctx.caches.keyring.invalidate()
    after = _tokens(signed_in, confidential, resource=RESOURCE)["access_token"]
    assert pyjwt.get_unverified_header(after)["kid"] == rotated.kid
    # Old, new and next are published; the old token still verifies.
    published = {k["kid"] for k in signed_in.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kid in published and rotated.kid in published and len(published) == 3
    assert _verify(signed_in, before)["aud"] == RESOURCE
    # Once every token it signed has expired (+ leeway), the old key leaves the JWKS.
    clock.advance(seconds=3600 + 5 * 60 + 1)
    services.ctx.caches.keyring.invalidate()
    keys.rotate(services.ctx, SYSTEM)
    services.ctx.caches.keyring.invalidate()
    published = {k["kid"] for k in signed_in.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kid not in published
    assert old_kid not in {k.kid for k in services.store.list_signing_keys()}


def test_automatic_rotation_after_the_interval(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    first = keys.active(list(services.store.list_signing_keys()))
    assert first is not None
    clock.advance(days=30, seconds=1)
    services.ctx.caches.keyring.invalidate()
    client.get("/.well-known/jwks.json")
    current = keys.active(list(services.store.list_signing_keys()))
    assert current is not None and current.kid != first.kid
    events, _ = services.store.list_audit(
        __import__("authgate.core.models", fromlist=["AuditQuery"]).AuditQuery(
            action="signing_key.rotated"
        )
    )
    assert any(e.details.get("previous") == first.kid for e in events)


def test_rotation_race_leaves_one_active_key(services: Services) -> None:
    import threading

    barrier = threading.Barrier(4)
    results: list[str] = []

    def rotate() -> None:
        barrier.wait()
        results.append(keys.rotate(services.ctx, SYSTEM).kid)

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = list(services.store.list_signing_keys())
    live = [k for k in stored if k.activated_at is not None and k.retired_at is None]
    assert len(live) == 1


@pytest.mark.parametrize(("alg", "kty"), [("RS256", "RSA"), ("EdDSA", "OKP")])
def test_other_signing_algorithms(settings: Any, clock: MovableClock, alg: str, kty: str) -> None:
    from authgate.app import build_services, create_app, warm_up
    from tests.conftest import ISSUER, make_account, make_client
    from tests.flows import login

    custom = settings.model_copy(update={"signing_alg": alg})
    services = build_services(custom, clock=clock)
    warm_up(services)
    resources.create_resource(
        services.ctx, SYSTEM, ResourceFields(identifier=RESOURCE, name="Example API")
    )
    account = make_account(services, "algs", admin=False)
    app = make_client(services)
    with TestClient(create_app(custom, services=services), base_url=ISSUER) as client:
        login(client, account.user.username, account.password)
        token = _tokens(client, app, resource=RESOURCE)["access_token"]
        header = pyjwt.get_unverified_header(token)
        assert header["alg"] == alg and header["typ"] == "at+jwt"
        jwks = client.get("/.well-known/jwks.json").json()
        [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
        assert jwk["kty"] == kty and "d" not in jwk
        claims = pyjwt.decode(
            token,
            key=pyjwt.PyJWK.from_dict(jwk),
            algorithms=[alg],
            audience=RESOURCE,
            issuer=ISSUER,
        )
        assert claims["aud"] == RESOURCE
        metadata = client.get("/.well-known/oauth-authorization-server").json()
        assert metadata["access_token_signing_alg_values_supported"] == [alg]
    services.store.close()
