"""UserInfo's refusals in the flow timeline (OpenID Connect Core 1.0 §5.3, RFC 6750 §3.1): a
token authgate issued ties its refusal to the flow of its grant; anything else (no token, a
value that names no token) is a flow of its own. An answer that succeeds records nothing."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.flows import FlowQuery
from tests.clock import MovableClock
from tests.conftest import Account, make_client
from tests.flows import RESOURCE, assert_token_response
from tests.spec.test_oidc_userinfo import USERINFO, assert_bearer_error, tokens
from tests.web.test_flows import assert_no_secret, flush, kinds, only_flow


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_an_answer_records_nothing_more(
    signed_in: TestClient, services: Services, alice: Account
) -> None:
    app = make_client(services)
    access = tokens(signed_in, app, "openid")["access_token"]
    before = kinds(only_flow(signed_in, services, app.id))
    assert signed_in.get(USERINFO, headers=bearer(access)).status_code == 200
    assert kinds(only_flow(signed_in, services, app.id)) == before


@pytest.mark.parametrize(
    ("scope", "resource", "status", "error", "reason"),
    [
        pytest.param("profile", None, 403, "insufficient_scope", "scope_insufficient", id="scope"),
        pytest.param(
            "openid read",
            RESOURCE,
            401,
            "invalid_token",
            "token_audience_mismatch",
            id="8707-audience",
        ),
    ],
)
def test_refusals_of_a_known_token_are_steps_of_its_flow(
    signed_in: TestClient,
    services: Services,
    alice: Account,
    scope: str,
    resource: str | None,
    status: int,
    error: str,
    reason: str,
) -> None:
    app = make_client(services)
    body = tokens(signed_in, app, scope, resource=resource)
    resp = signed_in.get(USERINFO, headers=bearer(body["access_token"]))
    assert_bearer_error(resp, status, error)
    steps = only_flow(signed_in, services, app.id)
    assert kinds(steps)[-2:] == [("token", "ok", None), ("userinfo", "refused", reason)]
    refused = steps[-1]
    # Without resource the token is for authgate itself (core/userinfo.py).
    own = services.ctx.policy.audience
    assert (refused.user_id, refused.resource) == (alice.user.id, resource or own)
    assert refused.detail["error"] == error
    assert_no_secret(services, body["access_token"], body["refresh_token"])


def test_expired_and_revoked_tokens(
    signed_in: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    app = make_client(services)
    first = tokens(signed_in, app, "openid")["access_token"]
    revoked = signed_in.post(
        "/oauth2/revoke", data={"token": first, "client_id": app.id, "client_secret": app.secret}
    )
    assert revoked.status_code == 200
    assert_bearer_error(signed_in.get(USERINFO, headers=bearer(first)), 401, "invalid_token")
    second = tokens(signed_in, app, "openid")["access_token"]
    clock.advance(hours=2)
    assert_bearer_error(signed_in.get(USERINFO, headers=bearer(second)), 401, "invalid_token")
    flush(signed_in)
    found, total = services.store.list_flows(FlowQuery(client_id=app.id))
    assert total == 2
    by_reason = {f.last_reason: services.store.list_flow_steps(f.id) for f in found}
    assert set(by_reason) == {"token_revoked", "token_expired"}
    assert [k[0] for k in kinds(by_reason["token_revoked"])][-2:] == ["revocation", "userinfo"]
    assert kinds(by_reason["token_expired"])[-1] == ("userinfo", "refused", "token_expired")
    assert_no_secret(services, first, second)


def test_a_client_polling_with_a_dead_token_is_flood_bounded(
    signed_in: TestClient, services: Services, alice: Account, clock: MovableClock
) -> None:
    """Nothing rate-limits UserInfo: tied refusals fall under the writer's burst per second
    too, or a loop would write a step per call into the grant's flow."""
    app = make_client(services)
    access = tokens(signed_in, app, "openid")["access_token"]
    clock.advance(hours=2)
    writer = signed_in.app.state.flow_writer  # type: ignore[attr-defined]
    second = [1000.0]
    writer._monotonic = lambda: second[0]
    for _ in range(12):
        resp = signed_in.get(USERINFO, headers=bearer(access))
        assert_bearer_error(resp, 401, "invalid_token")
    steps = only_flow(signed_in, services, app.id)
    assert [s.reason for s in steps if s.kind == "userinfo"] == ["token_expired"] * 10
    second[0] += 1
    assert_bearer_error(signed_in.get(USERINFO, headers=bearer(access)), 401, "invalid_token")
    last = only_flow(signed_in, services, app.id)[-1]
    assert (last.kind, last.detail["suppressed"]) == ("userinfo", 2)


def test_a_client_credentials_token_is_refused_in_a_flow_of_its_own(
    client: TestClient, services: Services
) -> None:
    own = services.ctx.policy.audience
    service = make_client(services, grant_types=["client_credentials"], service_access={own: []})
    assert service.secret is not None
    resp = client.post(
        "/oauth2/tokens",
        data={"grant_type": "client_credentials"},
        auth=(service.id, service.secret),
    )
    access = assert_token_response(resp)["access_token"]
    refused = client.get(USERINFO, headers=bearer(access))
    assert_bearer_error(refused, 401, "invalid_token")
    flush(client)
    found, total = services.store.list_flows(FlowQuery(client_id=service.id))
    assert total == 2  # the token's (client_credentials starts one each time) and this one
    [flow] = [f for f in found if f.last_reason == "token_not_for_person"]
    [step] = services.store.list_flow_steps(flow.id)
    assert (step.kind, step.client_id, step.user_id) == ("userinfo", service.id, None)
    assert_no_secret(services, access, service.secret)


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        pytest.param({}, "token_missing", id="6750-3.1-no-token"),
        pytest.param({"headers": bearer("agat_nope_nope")}, "token_invalid", id="unknown"),
        pytest.param(
            {"params": {"access_token": "agat_inthe_url"}}, "request_invalid", id="6750-2.3-query"
        ),
    ],
)
def test_refusals_of_no_known_token_are_flows_of_their_own(
    client: TestClient, services: Services, send: dict[str, dict[str, str]], reason: str
) -> None:
    resp = client.get(USERINFO, **send)  # type: ignore[arg-type]
    assert resp.status_code in (400, 401)
    flush(client)
    found, total = services.store.list_flows(FlowQuery(reason=reason))
    assert total == 1 and found[0].client_id is None
    [step] = services.store.list_flow_steps(found[0].id)
    assert (step.kind, step.outcome, step.reason) == ("userinfo", "refused", reason)
    assert_no_secret(services, "agat_nope_nope", "agat_inthe_url")
