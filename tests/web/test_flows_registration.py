"""Dynamic client registration in the flow timeline (RFC 7591 §3): a registration starts the
new client's first flow; each refusal, made before any client exists, a flow of its own with
its reason code. Driven through POST /oauth2/register; nothing secret reaches the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core.flows import Flow, FlowQuery, FlowStep
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account
from tests.flows import assert_oauth_error
from tests.spec.test_rfc7591 import REGISTER, WEB_URI, registered, state
from tests.web.test_flows import assert_no_secret, flows_of, flush, kinds
from tests.web.test_registration_abuse import PUBLIC, TOKENS, auth, put_settings

CONFIDENTIAL = {"redirect_uris": [WEB_URI], "token_endpoint_auth_method": "client_secret_basic"}


def flows_refused_with(client: TestClient, services: Services, reason: str) -> list[Flow]:
    flush(client)
    found, _ = services.store.list_flows(FlowQuery(reason=reason, limit=100))
    return list(found)


def only_refusal(client: TestClient, services: Services, reason: str) -> FlowStep:
    """The one flow refused with ``reason``: a registration refusal of no client."""
    [flow] = flows_refused_with(client, services, reason)
    assert flow.client_id is None and (flow.steps, flow.refusals) == (1, 1)
    [step] = services.store.list_flow_steps(flow.id)
    assert (step.kind, step.outcome, step.reason) == ("registration", "refused", reason)
    assert step.request_id and step.reference == step.request_id[:8]
    return step


def test_a_registration_starts_the_clients_first_flow(
    client: TestClient, services: Services
) -> None:
    public = registered(client, PUBLIC)
    confidential = registered(client, CONFIDENTIAL)
    for body, method in ((public, "none"), (confidential, "client_secret_basic")):
        [flow] = flows_of(client, services, body["client_id"])
        steps = services.store.list_flow_steps(flow.id)
        assert kinds(steps) == [("registration", "ok", None)]
        assert steps[0].client_id == body["client_id"]
        assert steps[0].detail == {
            "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code", "refresh_token"],
            "initial_access_token": False,
        }
    # The client's credentials are in the response only, never in the timeline.
    assert_no_secret(
        services,
        public["registration_access_token"],
        confidential["registration_access_token"],
        confidential["client_secret"],
    )


def test_with_an_initial_access_token(
    client: TestClient, services: Services, admin: Account
) -> None:
    put_settings(client, admin, registration_initial_access_token_required=True)
    made = client.post(TOKENS, headers=auth(admin), json={"name": "ci", "max_uses": 1})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    body = registered(client, PUBLIC, headers={"Authorization": f"Bearer {token}"})
    [flow] = flows_of(client, services, body["client_id"])
    [step] = services.store.list_flow_steps(flow.id)
    assert step.detail["initial_access_token"] is True
    # Used up: the next one is refused with its own reason.
    before = state(services)
    again = client.post(REGISTER, json=PUBLIC, headers={"Authorization": f"Bearer {token}"})
    assert_oauth_error(again, 401, "invalid_token")
    assert state(services) == before
    refused = only_refusal(client, services, "registration_token_invalid")
    assert refused.detail["error"] == "invalid_token"
    assert_no_secret(services, token)


def _switched_off(client: TestClient, admin: Account) -> dict[str, Any]:
    put_settings(client, admin, dynamic_client_registration_enabled=False)
    return {"json": PUBLIC}


def _token_required(client: TestClient, admin: Account) -> dict[str, Any]:
    put_settings(client, admin, registration_initial_access_token_required=True)
    return {"json": PUBLIC, "headers": {"Authorization": "Bearer not-an-initial-token"}}


def _capped(client: TestClient, admin: Account) -> dict[str, Any]:
    put_settings(client, admin, registration_max_clients=1)
    registered(client, PUBLIC)
    return {"json": PUBLIC}


@pytest.mark.parametrize(
    ("prepare", "status", "error", "reason"),
    [
        pytest.param(_switched_off, 403, "access_denied", "registration_disabled", id="off"),
        pytest.param(
            _token_required, 401, "invalid_token", "registration_token_missing", id="no-token"
        ),
        pytest.param(_capped, 403, "access_denied", "registration_limit_reached", id="cap"),
        pytest.param(
            lambda c, a: {"json": {**PUBLIC, "client_name": 7}},
            400,
            "invalid_client_metadata",
            "registration_metadata_invalid",
            id="7591-2-bad-field",
        ),
        pytest.param(
            lambda c, a: {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_client_metadata",
            "registration_metadata_invalid",
            id="7591-3.1-not-json",
        ),
        pytest.param(
            lambda c, a: {"json": {**PUBLIC, "redirect_uris": [WEB_URI + "#frag"]}},
            400,
            "invalid_redirect_uri",
            "redirect_uri_invalid",
            id="7591-2-fragment",
        ),
        pytest.param(
            lambda c, a: {"json": {**PUBLIC, "software_statement": "eyJ.eyJ.sig"}},
            400,
            "unapproved_software_statement",
            "software_statement_unapproved",
            id="7591-3.2.2-software-statement",
        ),
    ],
)
def test_refusals_are_flows_of_their_own(
    client: TestClient,
    services: Services,
    admin: Account,
    prepare: Any,
    status: int,
    error: str,
    reason: str,
) -> None:
    kwargs = prepare(client, admin)
    before = state(services)
    resp = client.post(REGISTER, **kwargs)
    assert_oauth_error(resp, status, error)
    assert state(services) == before  # refused: nothing stored, nothing audited
    step = only_refusal(client, services, reason)
    assert step.detail["error"] == error
    assert step.detail["description"] == resp.json()["error_description"]


def test_a_token_in_the_query_is_refused_and_not_recorded(
    client: TestClient, services: Services
) -> None:
    leaked = "agiat_abcdefgh_" + "s" * 40
    resp = client.post(f"{REGISTER}?access_token={leaked}", json=PUBLIC)
    assert_oauth_error(resp, 400, "invalid_request")
    only_refusal(client, services, "request_invalid")
    assert_no_secret(services, leaked)


@pytest.fixture
def limited(settings: Settings, clock: MovableClock) -> Iterator[tuple[TestClient, Services]]:
    one = settings.model_copy(update={"registration_rate_per_ip": 1})
    services = build_services(one, clock=clock)
    with TestClient(create_app(one, services=services), base_url=ISSUER) as client:
        yield client, services
    services.store.close()


def test_rate_limited(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    first = registered(client, PUBLIC)
    resp = client.post(REGISTER, json=PUBLIC)
    assert_oauth_error(resp, 429, "temporarily_unavailable")
    step = only_refusal(client, services, "rate_limited")
    assert step.detail["error"] == "temporarily_unavailable"
    [flow] = flows_of(client, services, first["client_id"])
    assert flow.refusals == 0
