"""RFC 8707 §2: a trailing "/" on a resource's path does not make another resource. Either
spelling finds the registered resource, at the authorization and the token endpoint; the
token's `aud` is the registered identifier; the other spelling cannot be registered again."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import resources, service_access
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from authgate.core.resources import ResourceFields
from tests.conftest import Account, Client, issued, make_client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    refresh,
    token_request,
)
from tests.web.test_admin_api import assert_problem, bearer

NO_SLASH = "https://mcp.example.com/mcp"  # registered by the fixtures, opaque tokens
WITH_SLASH = "https://tools.example.com/mcp/"  # registered below, JWTs


@pytest.fixture
def with_slash(services: Services) -> str:
    resources.create_resource(
        services.ctx,
        SYSTEM,
        ResourceFields(identifier=WITH_SLASH, name="Tools", scopes=(ScopeInfo("run", "Run"),)),
    )
    return WITH_SLASH


def _introspect(client: TestClient, caller: Client, token: str) -> Any:
    resp = client.post(
        "/oauth2/introspect", data={"token": token}, auth=(caller.id, caller.secret or "")
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _jwt_aud(token: str) -> object:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]


def _tokens(
    client: TestClient, app: Client, at_authorize: str, at_token: str | None
) -> dict[str, Any]:
    pkce = generate_pkce()
    code = authorize(client, app.id, challenge=pkce.challenge, resource=at_authorize)
    return assert_token_response(
        exchange_code(
            client,
            code,
            client_id=app.id,
            client_secret=app.secret,
            verifier=pkce.verifier,
            resource=at_token,
        )
    )


def _audiences(services: Services, app_id: str) -> set[str]:
    import sqlalchemy as sa

    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT audience FROM access_tokens WHERE app_id = :a"), {"a": app_id}
        )
        return {r[0] for r in rows}


@pytest.mark.parametrize(
    ("at_authorize", "at_token"),
    [
        pytest.param(NO_SLASH + "/", None, id="2-slash-at-authorize"),
        pytest.param(NO_SLASH + "/", NO_SLASH + "/", id="2-slash-at-both"),
        pytest.param(NO_SLASH, NO_SLASH + "/", id="2-slash-at-token"),
        pytest.param(NO_SLASH + "/", NO_SLASH, id="2-slash-at-authorize-only"),
    ],
)
def test_slash_finds_the_resource_registered_without(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    at_authorize: str,
    at_token: str | None,
) -> None:
    body = _tokens(signed_in, confidential, at_authorize, at_token)

    info = _introspect(signed_in, confidential, body["access_token"])
    assert info["active"] is True and info["aud"] == NO_SLASH
    assert _audiences(services, confidential.id) == {NO_SLASH}
    again = refresh(
        signed_in,
        body["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
        resource=NO_SLASH + "/",
    )
    assert (
        _introspect(signed_in, confidential, assert_token_response(again)["access_token"])["aud"]
        == NO_SLASH
    )


@pytest.mark.parametrize(
    ("at_authorize", "at_token"),
    [
        pytest.param(WITH_SLASH[:-1], None, id="2-no-slash-at-authorize"),
        pytest.param(WITH_SLASH[:-1], WITH_SLASH[:-1], id="2-no-slash-at-both"),
        pytest.param(WITH_SLASH, WITH_SLASH[:-1], id="2-no-slash-at-token"),
    ],
)
def test_no_slash_finds_the_resource_registered_with(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    with_slash: str,
    at_authorize: str,
    at_token: str | None,
) -> None:
    body = _tokens(signed_in, confidential, at_authorize, at_token)

    assert _jwt_aud(body["access_token"]) == WITH_SLASH
    assert _introspect(signed_in, confidential, body["access_token"])["aud"] == WITH_SLASH
    assert _audiences(services, confidential.id) == {WITH_SLASH}


@pytest.mark.parametrize(
    "at_token",
    [
        pytest.param(NO_SLASH + "//", id="2-two-slashes"),
        pytest.param("https://mcp.example.com/mc", id="2-other-path"),
    ],
)
def test_more_than_one_slash_is_another_resource(
    signed_in: TestClient, services: Services, confidential: Client, at_token: str
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, resource=NO_SLASH)
    before = issued(services, confidential.id)

    resp = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=pkce.verifier,
        resource=at_token,
    )

    assert_oauth_error(resp, 400, "invalid_target")
    assert issued(services, confidential.id) == before


@pytest.mark.parametrize(
    ("registered", "again"),
    [
        pytest.param(NO_SLASH, NO_SLASH + "/", id="slash-added"),
        pytest.param(WITH_SLASH, WITH_SLASH[:-1], id="slash-removed"),
    ],
)
def test_registering_the_other_spelling_is_409(
    client: TestClient,
    services: Services,
    admin: Account,
    with_slash: str,
    registered: str,
    again: str,
) -> None:
    before = services.store.list_resources()

    resp = client.post(
        "/api/v2/resources", json={"identifier": again, "name": "Again"}, headers=bearer(admin)
    )

    problem = assert_problem(resp, 409)
    assert registered in problem["detail"]
    assert services.store.list_resources() == before
    found = client.get(
        "/api/v2/resources/" + again.replace(":", "%3A").replace("/", "%2F"), headers=bearer(admin)
    )
    assert found.status_code == 200 and found.json()["identifier"] == registered


def test_client_credentials_either_spelling(
    client: TestClient, services: Services, with_slash: str
) -> None:
    """An operator's grant and a service's request may spell the trailing "/" differently."""
    app = make_client(
        services,
        grant_types=["client_credentials"],
        redirect_uris=[],
        service_access={WITH_SLASH[:-1]: ["run"]},  # granted without the slash
    )
    assert [e.resource for e in app.app.service_access] == [WITH_SLASH]  # as registered

    resp = token_request(
        client,
        {"grant_type": "client_credentials", "resource": WITH_SLASH[:-1], "scope": "run"},
        basic=(app.id, app.secret or ""),
    )

    body = assert_token_response(resp)
    assert _jwt_aud(body["access_token"]) == WITH_SLASH and body["scope"] == "run"
    revoked = service_access.revoke(services.ctx, SYSTEM, app.id, WITH_SLASH[:-1])
    assert revoked.service_access == ()
