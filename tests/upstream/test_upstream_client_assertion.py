"""authgate's client authentication at an upstream token endpoint, against the Python
stand-in that records what authgate sent (RFC 7523 §2.2 and §3, OIDC Core §9, RFC 6749
§2.3.1): the ``private_key_jwt`` assertion checked by an independent library (PyJWT) with the
published JWK and with the certificate's key, its header, claims and lifetime; the key sealed
at rest and bound to its provider; rotation; the rules of ``providers.check``; an explicit
method the provider does not list; GitHub's Basic header. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlencode

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from authgate.core.context import SYSTEM
from authgate.core.errors import Conflict, ValidationFailed
from authgate.core.models import AuditQuery, UpstreamProvider
from authgate.core.upstream import client_assertion, providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.crypto import encryption
from authgate.crypto.encryption import DecryptionError
from authgate.services import Services
from tests.clock import MovableClock
from tests.upstream import provider, standin
from tests.upstream.conftest import add_provider, query_of, start

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keyed(services: Services, issuer: str, **settings: Any) -> UpstreamProvider:
    settings = {"token_auth_method": "private_key_jwt", "client_secret": None} | settings
    add_provider(services, "standin", issuer, jit_create=True, scopes="openid email", **settings)
    stored = services.store.get_upstream_provider("standin")
    assert stored is not None
    return stored


def callback(client: TestClient, stand_in: standin.StandIn) -> Any:
    """A sign-in through the stand-in, its ID token good: authgate's answer to the callback."""
    sent = query_of(start(client, "standin"))
    stand_in.id_token = stand_in.sign(
        {"sub": "subject-1", "nonce": sent["nonce"], "email": "s@example.com", "name": "S"}
    )
    params = {"code": "standin-code", "state": sent["state"], "iss": stand_in.issuer}
    return client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )


def reasons(services: Services) -> list[str]:
    events, _ = services.store.list_audit(AuditQuery(action="upstream.sign_in_refused"))
    return [str(e.details["reason"]) for e in events]


def test_the_assertion_verifies_with_the_published_jwk_and_the_certificate(
    client: TestClient, services: Services, stand_in: standin.StandIn, clock: MovableClock
) -> None:
    keyed(services, stand_in.issuer)
    resp = callback(client, stand_in)
    assert resp.status_code == 303, resp.text
    [(form, headers)] = stand_in.token_requests
    assert "authorization" not in headers and "client_secret" not in form
    assert form["client_id"] == provider.CLIENT_ID
    assert form["client_assertion_type"] == JWT_BEARER
    token = form["client_assertion"]

    # The key as the JWKS URL publishes it, read by PyJWT (not the library that signed).
    published = client.get("/login/upstream/standin/jwks")
    assert published.status_code == 200
    assert published.headers["content-type"] == "application/json"
    [jwk] = published.json()["keys"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    audience = f"{stand_in.issuer}/token"
    claims = pyjwt.decode(
        token, pyjwt.PyJWK(jwk).key, algorithms=["RS256"], audience=audience,
        issuer=provider.CLIENT_ID, options={"require": ["exp", "iat", "nbf", "jti", "sub"]},
    )  # fmt: skip

    # The same with the public key of the certificate the management API would hand out.
    stored = services.store.get_upstream_provider("standin")
    assert stored is not None and stored.assertion_certificate is not None
    certificate = x509.load_pem_x509_certificate(stored.assertion_certificate.encode())
    der = certificate.public_bytes(serialization.Encoding.DER)
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    again = pyjwt.decode(token, public, algorithms=["RS256"], audience=audience)
    assert again == claims

    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["x5t"] == b64url(hashlib.sha1(der).digest())  # noqa: S324 - a thumbprint
    assert header["x5t#S256"] == b64url(hashlib.sha256(der).digest())
    assert header["kid"] == header["x5t#S256"] == jwk["kid"] == jwk["x5t#S256"]
    assert jwk["x5t"] == header["x5t"] and jwk["x5c"] == [base64.b64encode(der).decode()]

    now = int(clock.now().timestamp())
    assert claims["iss"] == claims["sub"] == provider.CLIENT_ID
    assert claims["aud"] == audience
    assert claims["iat"] == claims["nbf"] == now and claims["exp"] == now + 60
    assert len(claims["jti"]) >= 32
    assert certificate.subject.rfc4514_string() == "CN=authgate upstream standin"
    lifetime = certificate.not_valid_after_utc - clock.now()
    assert 729 <= lifetime.days <= 730


def test_each_assertion_is_new_and_the_issuer_can_be_the_audience(
    client: TestClient, services: Services, stand_in: standin.StandIn, clock: MovableClock
) -> None:
    keyed(services, stand_in.issuer, assertion_audience="issuer")
    assert callback(client, stand_in).status_code == 303
    clock.advance(minutes=3)
    client.cookies.clear()
    assert callback(client, stand_in).status_code == 303
    first, second = (pyjwt.decode(f["client_assertion"], options={"verify_signature": False})
                     for f, _ in stand_in.token_requests)  # fmt: skip
    assert first["aud"] == second["aud"] == stand_in.issuer
    assert first["jti"] != second["jti"] and second["iat"] == first["iat"] + 180


def test_the_private_key_is_sealed_and_bound_to_its_provider(
    services: Services, stand_in: standin.StandIn
) -> None:
    stored = keyed(services, stand_in.issuer)
    sealed = stored.assertion_key
    assert sealed is not None and "PRIVATE KEY" not in sealed and "MII" not in sealed
    assert stored.assertion_certificate is not None
    assert stored.assertion_certificate.startswith("-----BEGIN CERTIFICATE-----")
    key = encryption.derive_key(services.ctx.secret_key, client_assertion.PURPOSE)
    pem = encryption.decrypt(key, sealed, b"standin")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(DecryptionError):
        encryption.decrypt(key, sealed, b"another")
    with pytest.raises(DecryptionError):  # the client secret's key does not open it
        encryption.decrypt(encryption.derive_key(services.ctx.secret_key, providers.PURPOSE),
                           sealed, b"standin")  # fmt: skip


def test_rotation_changes_the_key_and_is_audited_without_the_private_key(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    before = keyed(services, stand_in.issuer)
    old_kid = client.get("/login/upstream/standin/jwks").json()["keys"][0]["kid"]
    rotated = providers.rotate_assertion_key(services.ctx, SYSTEM, "standin")
    assert rotated.assertion_key != before.assertion_key
    assert rotated.assertion_certificate != before.assertion_certificate
    stored = services.store.get_upstream_provider("standin")
    assert stored == rotated
    new_kid = client.get("/login/upstream/standin/jwks").json()["keys"][0]["kid"]
    assert new_kid != old_kid
    events, _ = services.store.list_audit(AuditQuery(action="upstream_provider.key_rotated"))
    [event] = events
    assert event.target_id == "standin" and event.actor_type == "system"
    described = client_assertion.described(rotated)
    assert described is not None
    assert event.details == {
        "previous_kid": old_kid,
        "kid": new_kid,
        "not_after": described.not_after.isoformat(),
    }
    assert rotated.assertion_key is not None
    assert rotated.assertion_key not in str(event.details) and "PRIVATE" not in str(event.details)

    # The next assertion is signed by the new key.
    assert callback(client, stand_in).status_code == 303
    [(form, _)] = stand_in.token_requests
    assert pyjwt.get_unverified_header(form["client_assertion"])["kid"] == new_kid


def test_the_key_goes_with_the_method_and_a_new_one_comes_back(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    first = keyed(services, stand_in.issuer)
    changes = {"token_auth_method": "client_secret_post", "client_secret": "s3cret-value"}
    plain = providers.update_provider(services.ctx, SYSTEM, "standin", changes)
    assert plain.assertion_key is None and plain.assertion_certificate is None
    gone = client.get("/login/upstream/standin/jwks")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert gone.headers["cache-control"] == "no-store"
    with pytest.raises(Conflict):
        providers.rotate_assertion_key(services.ctx, SYSTEM, "standin")

    # Back to private_key_jwt: the secret must go in the same change, and a new key is made.
    with pytest.raises(ValidationFailed) as refused:
        providers.update_provider(
            services.ctx, SYSTEM, "standin", {"token_auth_method": "private_key_jwt"}
        )
    assert "client_secret" in (refused.value.validations or {})
    back = providers.update_provider(
        services.ctx,
        SYSTEM,
        "standin",
        {"token_auth_method": "private_key_jwt", "client_secret": ""},
    )
    assert back.client_secret is None and back.assertion_key is not None
    assert back.assertion_certificate != first.assertion_certificate
    # Another change keeps the key.
    renamed = providers.update_provider(services.ctx, SYSTEM, "standin", {"display_name": "X"})
    assert renamed.assertion_key == back.assertion_key


def test_an_explicit_secret_method_is_what_is_sent(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    # Discovery lists Basic (the default when omitted), the operator pinned the form.
    add_provider(services, "standin", stand_in.issuer, jit_create=True,
                 token_auth_method="client_secret_post")  # fmt: skip
    assert callback(client, stand_in).status_code == 303
    [(form, headers)] = stand_in.token_requests
    assert form["client_secret"] == provider.CLIENT_SECRET
    assert form["client_id"] == provider.CLIENT_ID and "authorization" not in headers
    assert "client_assertion" not in form


JWT = "private_key_jwt"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"token_auth_method": JWT}, "client_secret", id="jwt-with-secret"),
        pytest.param({"token_auth_method": "client_secret_basic", "client_secret": None},
                     "client_secret", id="basic-without-secret"),
        pytest.param({"token_auth_method": "client_secret_jwt"}, "token_auth_method",
                     id="unknown-method"),
        pytest.param({"token_auth_method": "none"}, "token_auth_method", id="none"),
        pytest.param({"assertion_audience": "resource"}, "assertion_audience", id="bad-audience"),
        pytest.param({"kind": "github", "issuer": "https://github.com", "scopes": "",
                      "token_auth_method": "private_key_jwt", "client_secret": None},
                     "token_auth_method", id="github-jwt"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused_and_nothing_is_stored(
    services: Services, changes: dict[str, Any], field: str
) -> None:
    values = {"id": "corp", "display_name": "Corp", "issuer": "https://idp.example.com",
              "client_id": "authgate", "client_secret": "a-secret-value"} | changes  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        providers.create_provider(services.ctx, SYSTEM, ProviderSpec(**values))
    assert field in (refused.value.validations or {})
    assert services.store.get_upstream_provider("corp") is None


def test_a_method_the_provider_does_not_list_is_refused_before_anything_is_sent(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    stand_in.metadata_extra = {"token_endpoint_auth_methods_supported": ["client_secret_basic"]}
    keyed(services, stand_in.issuer)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    resp = client.post(
        "/login/upstream/standin", data={"csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 400 and "location" not in resp.headers
    assert "The identity provider is not set up correctly" in resp.text
    assert reasons(services) == ["auth_method_unsupported"]
    assert stand_in.token_requests == []


def test_a_method_dropped_from_discovery_during_the_sign_in_is_refused_at_the_exchange(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    keyed(services, stand_in.issuer)
    sent = query_of(start(client, "standin"))
    stand_in.metadata_extra = {"token_endpoint_auth_methods_supported": ["client_secret_post"]}
    services.ctx.caches.upstream_documents.forget("standin")  # its metadata read again
    params = {"code": "standin-code", "state": sent["state"], "iss": stand_in.issuer}
    resp = client.get(
        f"/login/upstream/standin/callback?{urlencode(params)}", follow_redirects=False
    )
    assert resp.status_code == 400
    assert stand_in.token_requests == []
    assert reasons(services) == ["auth_method_unsupported"]
    assert services.store.get_upstream_identity("standin", "subject-1") is None


def test_the_jwks_of_an_unknown_or_secret_provider_is_a_json_404(
    client: TestClient, services: Services, stand_in: standin.StandIn
) -> None:
    add_provider(services, "standin", stand_in.issuer)
    for path in ("standin", "nobody", "Not%20An%20Id"):
        resp = client.get(f"/login/upstream/{path}/jwks")
        assert resp.status_code == 404, path
        assert resp.json() == {"error": "not_found", "error_description": "No such key set"}
