"""Client authentication and ID tokens in the flow timeline: a successful client
authentication (RFC 6749 §2.3, RFC 7523 §2.2) is said by the step it authenticated for (its
method as ``client_auth`` in the detail, never a credential; a failed one is a step of its
own); the token step says whether an ID token came with it (OIDC Core §3.1.3.3), never the
token itself."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.flows import FlowQuery
from tests.clock import MovableClock
from tests.conftest import Client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    exchange_code,
    generate_pkce,
    refresh,
)
from tests.spec.test_rfc7523 import claims_for, code_request, new_key, pk_client, public_set, sign
from tests.web.test_flows import assert_no_secret, flows_of, flush, kinds, only_flow


@pytest.mark.parametrize(
    ("basic", "method"),
    [
        pytest.param(True, "client_secret_basic", id="2.3.1-basic"),
        pytest.param(False, "client_secret_post", id="2.3.1-post"),
    ],
)
def test_a_secret_is_recorded_by_its_method_only(
    signed_in: TestClient, services: Services, confidential: Client, basic: bool, method: str
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
            basic=basic,
        )
    )
    steps = only_flow(signed_in, services, confidential.id)
    # The exchange says how the client authenticated: no step of its own.
    assert kinds(steps)[-2:] == [("code_issued", "ok", None), ("token", "ok", None)]
    assert steps[-1].detail["client_auth"] == method
    assert all("client_auth" not in s.detail for s in steps[:-1])
    assert confidential.secret is not None
    assert_no_secret(services, confidential.secret, code, body["access_token"])


def test_private_key_jwt(signed_in: TestClient, services: Services, clock: MovableClock) -> None:
    key = new_key("ES256")
    app = pk_client(services, jwks=public_set(key))
    assertion = sign(key, claims_for(app.id, clock), "ES256")
    body = assert_token_response(code_request(signed_in, app.id, assertion))
    steps = only_flow(signed_in, services, app.id)
    assert kinds(steps)[-1] == ("token", "ok", None)
    assert steps[-1].detail["client_auth"] == "private_key_jwt"
    assert_no_secret(services, assertion, body["access_token"])


def test_a_refusal_after_authentication_is_still_flood_bounded(
    client: TestClient, services: Services, confidential: Client
) -> None:
    """An unknown code ties the request to no flow: each one would start a flow, so beyond the
    writer's burst per second they are counted, not written, although the client's
    authentication before the refusal went well (web/flow_writer.py)."""
    writer = client.app.state.flow_writer  # type: ignore[attr-defined]
    writer._monotonic = lambda: 1000.0  # one second for the whole test
    for n in range(12):
        resp = exchange_code(
            client,
            f"agac_unknown{n:02d}_" + "x" * 40,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=generate_pkce().verifier,
        )
        assert_oauth_error(resp, 400, "invalid_grant")
    found = flows_of(client, services, confidential.id)
    assert len(found) == 10  # the burst
    for flow in found:
        steps = services.store.list_flow_steps(flow.id)
        assert kinds(steps) == [("token", "refused", "code_unknown")]
        assert steps[0].detail["client_auth"] == "client_secret_post"


def test_a_revocation_that_revokes_nothing_records_nothing(
    client: TestClient, services: Services, confidential: Client
) -> None:
    resp = client.post(
        "/oauth2/revoke",
        data={"token": "agrt_nothing_" + "x" * 40},
        auth=(confidential.id, confidential.secret or ""),
    )
    assert resp.status_code == 200
    assert flows_of(client, services, confidential.id) == []


def test_an_id_token_is_noted_on_the_exchange_and_the_refresh(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, scope="openid")
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    again = assert_token_response(
        refresh(
            signed_in,
            body["refresh_token"],
            client_id=confidential.id,
            client_secret=confidential.secret,
        )
    )
    steps = only_flow(signed_in, services, confidential.id)
    granted = [s for s in steps if s.kind in ("token", "refresh")]
    assert [(s.kind, s.detail.get("id_token")) for s in granted] == [
        ("token", "issued"),
        ("refresh", "issued"),
    ]
    assert_no_secret(services, body["id_token"], again["id_token"], body["access_token"])


def test_no_id_token_without_openid(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge, resource=RESOURCE)
    body = assert_token_response(
        exchange_code(
            signed_in,
            code,
            client_id=confidential.id,
            client_secret=confidential.secret,
            verifier=pkce.verifier,
        )
    )
    assert "id_token" not in body
    token = only_flow(signed_in, services, confidential.id)[-1]
    assert token.kind == "token" and "id_token" not in token.detail


def test_an_invalid_nonce_is_its_own_reason(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(
        confidential.id,
        challenge=generate_pkce().challenge,
        scope="openid",
        extra={"nonce": "n" * 513},
    )
    resp = signed_in.get(url, follow_redirects=False)
    assert resp.status_code in (302, 400)
    flush(signed_in)
    found, total = services.store.list_flows(FlowQuery(client_id=confidential.id))
    assert total == 1 and found[0].last_reason == "nonce_invalid"
    steps = services.store.list_flow_steps(found[0].id)
    assert kinds(steps) == [("authorize", "refused", "nonce_invalid")]
