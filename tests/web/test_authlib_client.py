"""A whole flow driven by Authlib's OAuth2 client, a real third-party client: it builds the
authorization URL with PKCE, parses our callback, and exchanges and refreshes the tokens."""

from __future__ import annotations

import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from starlette.testclient import TestClient

from tests.conftest import Client
from tests.flows import REDIRECT_URI, RESOURCE, csrf_from


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_flow(signed_in: TestClient, confidential: Client, auth_method: str) -> None:
    oauth = OAuth2Client(
        client_id=confidential.id,
        client_secret=confidential.secret,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        transport=signed_in._transport,
        base_url="http://testserver",
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        "http://testserver/oauth2/authorize", code_verifier=verifier, resource=RESOURCE
    )
    page = signed_in.get(url)
    assert page.status_code == 200
    decision = signed_in.post(
        url, data={"csrf_token": csrf_from(page), "decision": "allow"}, follow_redirects=False
    )
    callback = decision.headers["location"]
    token = oauth.fetch_token(
        "http://testserver/oauth2/tokens",
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
        resource=RESOURCE,
    )
    assert token["token_type"] == "Bearer"
    assert token["access_token"].count(".") == 2  # an RFC 9068 JWT for this resource
    assert token["expires_at"] > 0
    refreshed = oauth.refresh_token(
        "http://testserver/oauth2/tokens", refresh_token=token["refresh_token"]
    )
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
