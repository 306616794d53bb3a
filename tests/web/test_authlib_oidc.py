"""An OpenID Connect relying party built from Authlib, end to end: discovery, the code flow
with PKCE and a nonce, the ID token checked by Authlib's ``CodeIDToken`` rules (iss, aud, azp,
nonce, at_hash, auth_time) over a signature checked by PyJWT against the discovered JWKS, and
UserInfo fetched with the access token. None of the checks is authgate's code."""

from __future__ import annotations

import time

import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken, UserInfo
from joserfc.errors import InvalidClaimError
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import accounts
from authgate.core.context import SYSTEM
from tests.conftest import ISSUER, Account, make_client
from tests.flows import REDIRECT_URI, RESOURCE, csrf_from


def test_authlib_openid_relying_party(
    signed_in: TestClient, services: Services, alice: Account
) -> None:
    accounts.update_user(
        services.ctx, SYSTEM, alice.user.id, email="alice@example.com", email_verified=True
    )
    app = make_client(services)
    http = signed_in._transport
    config = signed_in.get("/.well-known/openid-configuration").json()
    assert config["issuer"] == ISSUER
    oauth = OAuth2Client(
        client_id=app.id,
        client_secret=app.secret,
        redirect_uri=REDIRECT_URI,
        scope="openid profile email",
        code_challenge_method="S256",
        transport=http,
        base_url=ISSUER,
    )
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = oauth.create_authorization_url(
        config["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    page = signed_in.get(url)
    assert page.status_code == 200, page.text
    decision = signed_in.post(
        url, data={"csrf_token": csrf_from(page), "decision": "allow"}, follow_redirects=False
    )
    token = oauth.fetch_token(
        config["token_endpoint"],
        authorization_response=decision.headers["location"],
        code_verifier=verifier,
        state=state,
    )
    assert token["scope"] == "openid profile email"
    # The signature, by PyJWT with the keys the discovery document points to.
    jwks = jwt.PyJWKSet.from_dict(signed_in.get(config["jwks_uri"]).json())
    header = jwt.get_unverified_header(token["id_token"])
    assert header["alg"] in config["id_token_signing_alg_values_supported"]
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    payload = jwt.decode(
        token["id_token"], key=key, algorithms=[header["alg"]], audience=app.id, issuer=ISSUER
    )
    # The claims, by Authlib's OIDC Core §3.1.3.7 rules.
    claims = CodeIDToken(
        payload,
        header,
        options={"iss": {"values": [ISSUER]}, "auth_time": {"essential": True}},
        params={"client_id": app.id, "nonce": nonce, "access_token": token["access_token"]},
    )
    claims.validate(now=int(time.time()))
    assert claims["sub"] == alice.user.id and claims["email_verified"] is True
    # A wrong nonce or another access token fails the same checks.
    for params in (
        {"client_id": app.id, "nonce": "other", "access_token": token["access_token"]},
        {"client_id": app.id, "nonce": nonce, "access_token": token["access_token"] + "x"},
        {"client_id": "someone-else", "nonce": nonce, "access_token": token["access_token"]},
    ):
        with pytest.raises(InvalidClaimError):
            CodeIDToken(payload, header, params=params).validate(now=int(time.time()))
    # UserInfo with the access token (its audience is authgate itself: no resource was sent).
    info = UserInfo(oauth.get(config["userinfo_endpoint"]).raise_for_status().json())
    assert info["sub"] == claims["sub"]
    assert (info["email"], info["email_verified"]) == ("alice@example.com", True)
    assert info["preferred_username"] == "alice"


def test_authlib_with_a_resource_keeps_the_audiences_apart(
    signed_in: TestClient, services: Services
) -> None:
    """RFC 8707 and OIDC in one response: the access token for the resource, the ID token for
    the client; UserInfo refuses the resource's token."""
    app = make_client(services)
    http = signed_in._transport
    oauth = OAuth2Client(
        client_id=app.id,
        client_secret=app.secret,
        redirect_uri=REDIRECT_URI,
        scope="openid read",
        code_challenge_method="S256",
        transport=http,
        base_url=ISSUER,
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        f"{ISSUER}/oauth2/authorize", code_verifier=verifier, resource=RESOURCE
    )
    page = signed_in.get(url)
    decision = signed_in.post(
        url, data={"csrf_token": csrf_from(page), "decision": "allow"}, follow_redirects=False
    )
    token = oauth.fetch_token(
        f"{ISSUER}/oauth2/tokens",
        authorization_response=decision.headers["location"],
        code_verifier=verifier,
        state=state,
        resource=RESOURCE,
    )
    access = jwt.decode(token["access_token"], options={"verify_signature": False})
    identity = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert access["aud"] == RESOURCE and identity["aud"] == app.id
    refused = oauth.get(f"{ISSUER}/oauth2/userinfo")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
