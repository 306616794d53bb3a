"""The flow timeline (core/flows.py): every refusal named in docs/flow-reasons.md driven through
real HTTP (the real sign-in and consent pages where a person is involved), then the flow's
steps, their order, the reason codes, and that no secret reached the store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core import accounts, flow_log
from authgate.core.context import SYSTEM
from authgate.core.flows import Flow, FlowQuery, FlowStep, PendingStep, Trace
from authgate.core.ports import StoreUnavailableError
from authgate.web.background import cleanup_once
from authgate.web.flow_writer import FlowWriter
from authgate.web.metrics import Metrics
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client, make_client
from tests.flows import (
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    csrf_from,
    decide,
    exchange_code,
    generate_pkce,
    login,
    refresh,
)
from tests.http_types import Response


def flush(client: TestClient) -> None:
    client.app.state.flow_writer.flush()  # type: ignore[attr-defined]


def flows_of(client: TestClient, services: Services, client_id: str) -> list[Flow]:
    flush(client)
    found, _ = services.store.list_flows(FlowQuery(client_id=client_id, limit=100))
    return list(found)


def only_flow(client: TestClient, services: Services, client_id: str) -> Sequence[FlowStep]:
    found = flows_of(client, services, client_id)
    assert len(found) == 1, [(f.id, f.steps) for f in found]
    return services.store.list_flow_steps(found[0].id)


def kinds(steps: Sequence[FlowStep]) -> list[tuple[str, str, str | None]]:
    return [(s.kind, s.outcome, s.reason) for s in steps]


def refusals(steps: Sequence[FlowStep]) -> list[str | None]:
    return [s.reason for s in steps if s.outcome == "refused"]


def stored_text(services: Services) -> str:
    """Every flow and step row, as text: what a secret must not be found in."""
    with services.store.engine.connect() as conn:
        rows = [
            *conn.execute(sa.text("SELECT * FROM flows")).mappings(),
            *conn.execute(sa.text("SELECT * FROM flow_steps")).mappings(),
        ]
    return json.dumps([dict(r) for r in rows], default=str)


def table_counts(services: Services) -> tuple[int, int]:
    """Rows of ``flows`` and of ``flow_steps``."""
    with services.store.engine.connect() as conn:
        counted = [
            conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("flows", "flow_steps")
        ]
    return counted[0], counted[1]


def assert_no_secret(services: Services, *values: str) -> None:
    text = stored_text(services)
    for value in values:
        assert value and value not in text


def reference_of(page: Response) -> str:
    match = re.search(r'id="(?:error|login)-reference">([^<]+)<', page.text)
    assert match is not None, page.text
    return match.group(1)


# -- the whole story of one authorization ------------------------------------------------------


def test_one_flow_from_authorization_request_to_revocation(
    client: TestClient, services: Services, alice: Account, public: Client
) -> None:
    pkce = generate_pkce()
    url = authorize_url(public.id, challenge=pkce.challenge, resource=RESOURCE, scope="read")
    # Not signed in: to the sign-in page, which comes back to the request.
    first = client.get(url, follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"].startswith("/login")
    page = client.get(first.headers["location"])
    resp = client.post(
        "/login",
        data={
            "username": alice.user.username,
            "password": alice.password,
            "csrf_token": csrf_from(page),
            "return_to": url,
        },
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == url
    code = callback_params(decide(client, url))["code"]
    tokens = assert_token_response(
        exchange_code(client, code, client_id=public.id, client_secret=None, verifier=pkce.verifier)
    )
    again = assert_token_response(
        refresh(client, tokens["refresh_token"], client_id=public.id, client_secret=None)
    )
    revoked = client.post(
        "/oauth2/revoke", data={"token": again["refresh_token"], "client_id": public.id}
    )
    assert revoked.status_code == 200

    steps = only_flow(client, services, public.id)
    assert kinds(steps) == [
        ("authorize", "ok", None),
        ("sign_in", "ok", None),
        ("authorize", "ok", None),
        ("consent", "ok", None),
        ("code_issued", "ok", None),
        ("token", "ok", None),
        ("refresh", "ok", None),
        ("revocation", "ok", None),
    ]
    # A public client authenticates with "none": the method, never a credential, said by the
    # step it authenticated for.
    assert [s.detail["client_auth"] for s in steps[-3:]] == ["none"] * 3
    assert all("client_auth" not in s.detail for s in steps[:-3])
    flow = services.store.get_flow(steps[0].flow_id)
    assert flow is not None
    assert (flow.client_id, flow.user_id, flow.resource) == (public.id, alice.user.id, RESOURCE)
    assert (flow.steps, flow.refusals, flow.last_outcome) == (8, 0, "ok")
    # Each step names the request it was part of, and its short reference.
    assert all(s.request_id and s.reference == s.request_id[:8] for s in steps)
    assert steps[4].detail["code_prefix"] == code.split("_")[1]
    # Each request its own reference: the code's, the exchange's, the refresh's.
    assert len({s.request_id for s in steps[4:]}) == 4
    assert_no_secret(
        services,
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        again["refresh_token"],
        pkce.verifier,
        alice.password,
    )


# -- refusals a person meets on the authorization pages ----------------------------------------


def test_unregistered_redirect_uri_is_a_page_whose_reference_finds_the_flow(
    client: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, redirect_uri="https://evil.example/cb")
    page = client.get(url, follow_redirects=False)
    assert page.status_code == 400 and "location" not in page.headers
    reference = reference_of(page)
    flush(client)
    timeline = flow_log.timeline(services.ctx, reference)
    assert kinds(timeline.steps) == [("authorize", "refused", "redirect_uri_not_registered")]
    assert timeline.flow.client_id == confidential.id
    assert timeline.steps[0].detail["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        pytest.param({"resource": "https://unknown.example.com"}, "resource_not_registered"),
        pytest.param({}, "pkce_missing"),
    ],
)
def test_authorization_request_refusals(
    signed_in: TestClient,
    services: Services,
    public: Client,
    extra: dict[str, Any],
    reason: str,
) -> None:
    challenge = None if reason == "pkce_missing" else generate_pkce().challenge
    url = authorize_url(public.id, challenge=challenge, resource=extra.get("resource"))
    resp = signed_in.get(url, follow_redirects=False)
    assert resp.status_code in (302, 400)
    steps = only_flow(signed_in, services, public.id)
    assert kinds(steps) == [("authorize", "refused", reason)]


def test_scope_narrowed_is_recorded_but_not_a_refusal(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    url = authorize_url(
        confidential.id, challenge=generate_pkce().challenge, resource=RESOURCE, scope="read bogus"
    )
    code = callback_params(decide(signed_in, url))["code"]
    steps = only_flow(signed_in, services, confidential.id)
    assert kinds(steps) == [
        ("authorize", "ok", None),
        ("authorize", "narrowed", "scope_narrowed"),
        ("consent", "ok", None),
        ("code_issued", "ok", None),
    ]
    assert steps[1].detail == {"requested": "read bogus", "granted": "read"}
    assert steps[0].user_id == alice.user.id
    assert_no_secret(services, code)


def test_user_denied_on_the_real_consent_page(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    params = callback_params(decide(signed_in, url, "deny"))
    assert params["error"] == "access_denied"
    steps = only_flow(signed_in, services, confidential.id)
    assert kinds(steps) == [
        ("authorize", "ok", None),
        ("consent", "refused", "user_denied"),
    ]
    flow = services.store.get_flow(steps[0].flow_id)
    assert flow is not None and (flow.refusals, flow.last_reason) == (1, "user_denied")


def test_a_forged_consent_form_is_refused_with_its_reason(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    page = signed_in.post(url, data={"csrf_token": "forged", "decision": "allow"})
    assert page.status_code == 403
    reference = reference_of(page)
    flush(signed_in)
    timeline = flow_log.timeline(services.ctx, reference)
    assert refusals(timeline.steps) == ["consent_form_invalid"]


@pytest.mark.parametrize("disabled", [False, True], ids=["wrong-password", "user-disabled"])
def test_sign_in_refusals_belong_to_the_authorization_flow(
    client: TestClient,
    services: Services,
    alice: Account,
    confidential: Client,
    disabled: bool,
) -> None:
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    client.get(url, follow_redirects=False)
    if disabled:
        accounts.update_user(services.ctx, SYSTEM, alice.user.id, disabled=True)
    page = client.get(f"/login?return_to={quote(url, safe='')}")
    password = alice.password if disabled else "wrong password entirely"
    resp = client.post(
        "/login",
        data={
            "username": alice.user.username,
            "password": password,
            "csrf_token": csrf_from(page),
            "return_to": url,
        },
    )
    assert resp.status_code == 401
    reference = reference_of(resp)
    steps = only_flow(client, services, confidential.id)
    expected = "user_disabled" if disabled else "sign_in_failed"
    assert kinds(steps) == [("authorize", "ok", None), ("sign_in", "refused", expected)]
    assert steps[1].reference == reference
    assert_no_secret(services, password)


# -- refusals at the token endpoint ------------------------------------------------------------


def _code(client: TestClient, app: Client, **kwargs: Any) -> tuple[str, str]:
    pkce = generate_pkce()
    return authorize(client, app.id, challenge=pkce.challenge, **kwargs), pkce.verifier


def _tokens(client: TestClient, app: Client) -> tuple[str, dict[str, Any]]:
    """A code of ``app`` (a confidential client) and the tokens it was exchanged for."""
    code, verifier = _code(client, app)
    answer = exchange_code(
        client, code, client_id=app.id, client_secret=app.secret, verifier=verifier
    )
    return code, assert_token_response(answer)


def test_wrong_verifier_then_right_one_is_one_flow(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    code, verifier = _code(signed_in, confidential)
    wrong = generate_pkce().verifier
    bad = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=wrong,
    )
    assert_oauth_error(bad, 400, "invalid_grant")
    good = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=verifier,
    )
    tokens = assert_token_response(good)
    steps = only_flow(signed_in, services, confidential.id)
    assert [k for k in kinds(steps) if k[0] in ("token", "client_auth")] == [
        ("token", "refused", "pkce_verifier_mismatch"),
        ("token", "ok", None),
    ]
    exchanges = [s for s in steps if s.kind == "token"]
    assert [s.detail["client_auth"] for s in exchanges] == ["client_secret_post"] * 2
    assert confidential.secret is not None
    assert_no_secret(services, code, wrong, verifier, confidential.secret, tokens["access_token"])


def test_wrong_secret_is_a_client_auth_step_of_the_codes_flow(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    code, verifier = _code(signed_in, confidential)
    wrong_secret = "agcs_abcdefgh_" + "x" * 40
    bad = exchange_code(
        signed_in, code, client_id=confidential.id, client_secret=wrong_secret, verifier=verifier
    )
    assert_oauth_error(bad, 401, "invalid_client")
    steps = only_flow(signed_in, services, confidential.id)
    assert kinds(steps)[-1] == ("client_auth", "refused", "client_secret_wrong")
    assert steps[-1].detail["grant_type"] == "authorization_code"
    assert_no_secret(services, code, wrong_secret, verifier)


def test_auth_method_mismatch(signed_in: TestClient, services: Services) -> None:
    pinned = make_client(services, token_endpoint_auth_method="client_secret_post")
    code, verifier = _code(signed_in, pinned)
    assert pinned.secret is not None
    bad = exchange_code(
        signed_in,
        code,
        client_id=pinned.id,
        client_secret=pinned.secret,
        verifier=verifier,
        basic=True,
    )
    assert_oauth_error(bad, 401, "invalid_client")
    steps = only_flow(signed_in, services, pinned.id)
    assert kinds(steps)[-1] == ("client_auth", "refused", "client_auth_method_mismatch")
    assert_no_secret(services, pinned.secret, code)


def test_expired_and_replayed_codes(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    code, verifier = _code(signed_in, confidential)
    args: dict[str, Any] = {
        "client_id": confidential.id,
        "client_secret": confidential.secret,
        "verifier": verifier,
    }
    assert_token_response(exchange_code(signed_in, code, **args))
    assert_oauth_error(exchange_code(signed_in, code, **args), 400, "invalid_grant")
    late, late_verifier = _code(signed_in, confidential)
    clock.advance(seconds=3600)
    args["verifier"] = late_verifier
    assert_oauth_error(exchange_code(signed_in, late, **args), 400, "invalid_grant")
    found = flows_of(signed_in, services, confidential.id)
    assert len(found) == 2
    by_reason = {f.last_reason: services.store.list_flow_steps(f.id) for f in found}
    assert set(by_reason) == {"code_replayed", "code_expired"}
    replayed = by_reason["code_replayed"]
    assert [k for k in kinds(replayed) if k[0] == "token"] == [
        ("token", "ok", None),
        ("token", "refused", "code_replayed"),
    ]
    assert_no_secret(services, code, late)


def test_refresh_reused_after_rotation(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    code, tokens = _tokens(signed_in, confidential)
    old = tokens["refresh_token"]
    rotated = refresh(signed_in, old, client_id=confidential.id, client_secret=confidential.secret)
    new = assert_token_response(rotated)["refresh_token"]
    clock.advance(seconds=3600)  # past the reuse window: only a thief holds the old token now
    reused = refresh(signed_in, old, client_id=confidential.id, client_secret=confidential.secret)
    assert_oauth_error(reused, 400, "invalid_grant")
    steps = only_flow(signed_in, services, confidential.id)
    assert [k for k in kinds(steps) if k[0] in ("token", "refresh")] == [
        ("token", "ok", None),
        ("refresh", "ok", None),
        ("refresh", "refused", "refresh_reused_after_rotation"),
    ]
    assert_no_secret(services, old, new, code)


def test_user_disabled_at_refresh_is_its_reason(
    signed_in: TestClient, services: Services, confidential: Client, alice: Account
) -> None:
    _, tokens = _tokens(signed_in, confidential)
    accounts.update_user(services.ctx, SYSTEM, alice.user.id, disabled=True)
    resp = refresh(
        signed_in,
        tokens["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    steps = only_flow(signed_in, services, confidential.id)
    # Disabling revokes the user's grants: the refresh meets a revoked family.
    assert kinds(steps)[-1] == ("refresh", "refused", "refresh_revoked")


def test_client_credentials_starts_its_own_flow_each_time(
    client: TestClient, services: Services
) -> None:
    service = make_client(
        services, grant_types=["client_credentials"], service_access={RESOURCE: ["read"]}
    )
    assert service.secret is not None
    for _ in range(2):
        resp = client.post(
            "/oauth2/tokens",
            data={"grant_type": "client_credentials", "resource": RESOURCE, "scope": "read"},
            auth=(service.id, service.secret),
        )
        assert_token_response(resp)
    found = flows_of(client, services, service.id)
    assert len(found) == 2
    for flow in found:
        steps = services.store.list_flow_steps(flow.id)
        assert kinds(steps) == [("client_credentials", "ok", None)]
        assert steps[0].detail["client_auth"] == "client_secret_basic"
        assert steps[0].resource == RESOURCE and steps[0].user_id is None
        # Nothing can join such a flow: it is its step alone, with no summary row.
        assert steps[0].id == flow.id and steps[0].alone
        assert services.store.get_flow(flow.id) == flow
        assert (flow.steps, flow.refusals, flow.last_outcome) == (1, 0, "ok")
    assert table_counts(services) == (0, 2)
    assert_no_secret(services, service.secret)


def test_a_flow_whose_id_was_handed_out_keeps_its_summary_row(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """A code issued before flows were recorded carries no flow: its redemption starts one and
    gives its id to the grant, so the refresh that follows joins it. That flow is not a step
    alone, even while it has one step: a summary row from the start, and one flow in every
    search."""
    code, verifier = _code(signed_in, confidential)
    with services.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE authorization_codes SET flow_id = NULL"))
    answer = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=verifier,
    )
    tokens = assert_token_response(answer)
    flush(signed_in)
    redeemed = [f for f in flows_of(signed_in, services, confidential.id) if f.steps == 1]
    assert len(redeemed) == 1 and services.store.get_flow(redeemed[0].id) == redeemed[0]
    [step] = services.store.list_flow_steps(redeemed[0].id)
    assert step.kind == "token" and not step.alone
    rotated = refresh(
        signed_in,
        tokens["refresh_token"],
        client_id=confidential.id,
        client_secret=confidential.secret,
    )
    assert_token_response(rotated)
    flush(signed_in)
    flow = services.store.get_flow(redeemed[0].id)
    assert flow is not None and flow.steps == 2
    steps = services.store.list_flow_steps(flow.id)
    assert kinds(steps) == [("token", "ok", None), ("refresh", "ok", None)]
    listed = [f.id for f in flows_of(signed_in, services, confidential.id)]
    assert listed.count(flow.id) == 1


def test_rate_limited(settings: Settings, services: Services) -> None:
    limited = settings.model_copy(update={"token_rate_per_client": 1})
    service = make_client(
        services, grant_types=["client_credentials"], service_access={RESOURCE: ["read"]}
    )
    assert service.secret is not None
    with TestClient(create_app(limited, services=services), base_url=ISSUER) as client:
        statuses = [
            client.post(
                "/oauth2/tokens",
                data={"grant_type": "client_credentials", "resource": RESOURCE},
                auth=(service.id, service.secret),
            ).status_code
            for _ in range(3)
        ]
        assert statuses[0] == 200 and statuses[-1] == 429
        found = flows_of(client, services, service.id)
    reasons = [f.last_reason for f in found]
    assert reasons.count("rate_limited") == statuses.count(429)


def test_introspection_records_only_refusals(
    client: TestClient, services: Services, confidential: Client
) -> None:
    ok = client.post(
        "/oauth2/introspect",
        data={"token": "nothing"},
        auth=(confidential.id, confidential.secret or ""),
    )
    assert ok.status_code == 200 and ok.json() == {"active": False}
    assert flows_of(client, services, confidential.id) == []
    bad = client.post(
        "/oauth2/introspect", data={"token": "nothing"}, auth=(confidential.id, "wrong-secret")
    )
    assert bad.status_code == 401
    steps = only_flow(client, services, confidential.id)
    assert kinds(steps) == [("client_auth", "refused", "client_secret_wrong")]
    assert_no_secret(services, "wrong-secret")


# -- switched off, retention and cap ------------------------------------------------------------


def test_switched_off_records_nothing(
    settings: Settings, services: Services, alice: Account, confidential: Client
) -> None:
    off = settings.model_copy(update={"flows_enabled": False})
    with TestClient(create_app(off, services=services), base_url=ISSUER) as client:
        assert getattr(client.app.state, "flow_writer", None) is None  # type: ignore[attr-defined]
        login(client, alice.user.username, alice.password)
        authorize(client, confidential.id, challenge=generate_pkce().challenge)
        client.get(authorize_url(confidential.id, redirect_uri="https://evil.example/cb"))
    assert services.store.list_flows(FlowQuery())[1] == 0


def _step(flow_id: str, n: int, at: Any) -> FlowStep:
    return FlowStep(
        id=f"{flow_id}-{n}",
        flow_id=flow_id,
        seq=n,
        at=at,
        kind="token",
        outcome="ok",
        reason=None,
        client_id="c",
        user_id=None,
        resource=None,
        request_id=None,
        reference=None,
    )


def test_retention_and_cap_are_enforced(services: Services, clock: MovableClock) -> None:
    store = services.store
    old = clock.now()
    store.record_flow_steps([_step("old", n, old) for n in range(3)])
    clock.advance(days=8)
    new = clock.now()
    store.record_flow_steps([_step(f"new{n}", 100 + n, new) for n in range(5)])
    # Retention: the old flow goes, with its steps.
    deleted = flow_log.purge(services.ctx, retention=timedelta(days=7), cap=1000, batch_size=2)
    assert deleted == 4
    assert store.get_flow("old") is None and store.list_flow_steps("old") == []
    assert store.list_flows(FlowQuery())[1] == 5
    # Cap: the newest 3 steps stay, and only the flows that still have one.
    deleted = flow_log.purge(services.ctx, retention=timedelta(days=7), cap=3, batch_size=2)
    assert deleted == 4
    kept, total = store.list_flows(FlowQuery())
    assert total == 3 and {f.id for f in kept} == {"new2", "new3", "new4"}


def test_summary_row_adds_up_batches(services: Services, clock: MovableClock) -> None:
    store = services.store
    first = _step("f", 1, clock.now())
    store.record_flow_steps([first])
    clock.advance(seconds=5)
    refused = FlowStep(
        **{**asdict(_step("f", 2, clock.now())), "outcome": "refused", "reason": "code_expired"}
    )
    store.record_flow_steps([refused])
    flow = store.get_flow("f")
    assert flow is not None
    assert (flow.steps, flow.refusals, flow.last_reason) == (2, 1, "code_expired")
    assert (flow.started_at, flow.last_at) == (first.at, refused.at)
    assert store.failing_clients(first.at, 10) == [("c", 1)]
    assert store.list_flows(FlowQuery(reason="code_expired"))[1] == 1
    assert store.list_flows(FlowQuery(reason="user_denied"))[1] == 0


def _alone(flow_id: str, at: Any, **fields: Any) -> FlowStep:
    """The only step of flow ``flow_id``: its id is the flow's."""
    step = _step(flow_id, 0, at)
    return dataclasses.replace(step, id=flow_id, kind="client_credentials", **fields)


def test_flows_of_one_step_are_found_by_every_search(
    services: Services, clock: MovableClock
) -> None:
    """A flow stored as its step alone is listed, counted, paged and looked up like one with
    a summary row, in the same order (the latest step first)."""
    store = services.store
    t0 = clock.now()
    store.record_flow_steps([_alone("a1", t0, client_id="svc")])
    clock.advance(seconds=1)
    t1 = clock.now()
    refusal = {"outcome": "refused", "reason": "rate_limited", "reference": "ref00001"}
    store.record_flow_steps(
        [
            _alone("a2", t1, client_id="svc", user_id="u1", resource="https://r/", **refusal),
            _step("long", 1, t1),
        ]
    )
    clock.advance(seconds=1)
    t2 = clock.now()
    store.record_flow_steps([_step("long", 2, t2), _alone("a3", t2, client_id="other")])
    assert table_counts(services) == (1, 5)

    def ids(**query: Any) -> tuple[list[str], int]:
        found, total = store.list_flows(FlowQuery(**query))
        return [f.id for f in found], total

    assert ids() == (["long", "a3", "a2", "a1"], 4)
    assert ids(limit=2, offset=1) == (["a3", "a2"], 4)
    assert ids(client_id="svc") == (["a2", "a1"], 2)
    assert ids(client_id="c") == (["long"], 1)
    assert ids(user_id="u1") == (["a2"], 1)
    assert ids(resource="https://r/") == (["a2"], 1)
    assert ids(reason="rate_limited") == (["a2"], 1)
    assert ids(reference="ref00001") == (["a2"], 1)
    assert ids(refused=True) == (["a2"], 1)
    assert ids(refused=False) == (["long", "a3", "a1"], 3)
    assert ids(since=t1) == (["long", "a3", "a2"], 3)
    assert ids(until=t1) == (["a1"], 1)
    assert ids(since=t1, until=t2, client_id="svc") == (["a2"], 1)
    assert store.get_flow("a2") == Flow(
        id="a2",
        started_at=t1,
        last_at=t1,
        client_id="svc",
        user_id="u1",
        resource="https://r/",
        steps=1,
        refusals=1,
        last_outcome="refused",
        last_reason="rate_limited",
    )
    long = store.get_flow("long")
    assert long is not None and (long.steps, long.started_at, long.last_at) == (2, t1, t2)
    assert store.get_flow("nothing") is None
    assert flow_log.timeline(services.ctx, "ref00001").flow.id == "a2"
    assert store.failing_clients(t0, 10) == [("svc", 1)]
    # The cap and the retention take a flow of one step with its step.
    clock.advance(days=8)
    deleted = flow_log.purge(services.ctx, retention=timedelta(days=7), cap=2, batch_size=10)
    assert deleted == 5 + 1
    assert ids() == ([], 0) and table_counts(services) == (0, 0)


def test_background_cleanup_purges_old_flows_and_counts_them(
    client: TestClient, services: Services, settings: Settings, clock: MovableClock
) -> None:
    service = make_client(
        services, grant_types=["client_credentials"], service_access={RESOURCE: ["read"]}
    )
    assert service.secret is not None
    resp = client.post(
        "/oauth2/tokens",
        data={"grant_type": "client_credentials", "resource": RESOURCE},
        auth=(service.id, service.secret),
    )
    assert_token_response(resp)
    assert len(flows_of(client, services, service.id)) == 1
    assert table_counts(services) == (0, 1)  # a flow of one step: the step alone
    clock.advance(seconds=settings.flow_retention_seconds + 1)
    metrics = Metrics()
    asyncio.run(cleanup_once(services.ctx, settings, metrics))
    assert flows_of(client, services, service.id) == []
    assert stored_text(services) == "[]"
    value = metrics.registry.get_sample_value(
        "authgate_cleanup_deleted_rows_total", {"kind": "flows"}
    )
    assert value == 1.0  # the step (the grant, saying how the client authenticated)


def test_refusals_are_counted_by_reason_and_bounded_client_label(
    client: TestClient, services: Services, confidential: Client
) -> None:
    for secret in ("wrong-one", "wrong-two"):
        resp = client.post(
            "/oauth2/introspect", data={"token": "x"}, auth=(confidential.id, secret)
        )
        assert resp.status_code == 401
    # A client nobody registered: its made-up id must not become a label.
    unknown = client.post("/oauth2/introspect", data={"token": "x"}, auth=("made-up-id", "s"))
    assert unknown.status_code == 401
    flush(client)
    text = client.get("/metrics").text
    operator = (
        f'authgate_flow_refusals_total{{client="{confidential.id}",reason="client_secret_wrong"}}'
    )
    assert f"{operator} 2.0" in text
    assert 'authgate_flow_refusals_total{client="other",reason="client_unknown"} 1.0' in text
    assert "made-up-id" not in text
    # What the writer did and what it cost: three steps stored, none dropped, some CPU time.
    samples = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("authgate_flow_")
    }
    assert samples["authgate_flow_steps_written_total"] == 3
    assert samples["authgate_flow_steps_dropped_total"] == 0
    assert 0 < samples["authgate_flow_writer_cpu_seconds_total"] < 5


class _FlakyStore:
    """A store whose writes fail while ``down``: what the writer does when the database is."""

    def __init__(self) -> None:
        self.down = True
        self.written: list[FlowStep] = []

    def record_flow_steps(self, steps: Sequence[FlowStep]) -> None:
        if self.down:
            raise StoreUnavailableError("database is down")
        self.written += steps


def _trace(request_id: str, *outcomes: str, client: str = "c", reason: str = "") -> Trace:
    """A request's trace, as the protocol edge hands it over: a step per outcome."""
    trace = Trace(request_id, client_id=client)
    for outcome in outcomes:
        refused = outcome == "refused"
        trace.steps.append(
            PendingStep("token", "refused" if refused else "ok", reason if refused else None, {})
        )
    return trace


def test_writer_drops_what_it_cannot_write_and_stays_bounded(clock: MovableClock) -> None:
    store = _FlakyStore()
    writer = FlowWriter(store, interval=60, max_pending=3, clock=clock)  # type: ignore[arg-type]
    try:
        writer.hand_over(_trace("a", *["ok"] * 5))
        assert writer.dropped == 2  # beyond max_pending: refused at once, memory bounded
        writer.hand_over(_trace("a2", "ok"))
        assert writer.dropped == 3  # nothing more fits until a write
        assert writer.flush() == 1  # the database is down: dropped and counted, not retried
        assert writer.dropped == 6 and store.written == []
        store.down = False
        writer.hand_over(_trace("b", "ok"))
        clock.advance(seconds=30)  # the step keeps the time it was handed over at
        writer.flush()
        assert [s.request_id for s in store.written] == ["b"] and writer.written == 1
        (step,) = store.written
        assert step.at == clock.now() - timedelta(seconds=30)
        assert step.alone and step.client_id == "c" and step.reference == "b"
    finally:
        writer.close()


def test_a_flood_of_untied_refusals_is_counted_but_bounded() -> None:
    store = _FlakyStore()
    store.down = False
    counted: list[FlowStep] = []
    now = [100.0]
    writer = FlowWriter(
        store,  # type: ignore[arg-type]
        interval=60,
        burst=3,
        on_written=counted.extend,
        monotonic=lambda: now[0],
    )

    def refusal(n: int, client: str = "c") -> Trace:
        return _trace(f"r{client}{n}", "refused", client=client, reason="client_secret_wrong")

    try:
        for n in range(5):
            writer.hand_over(refusal(n))
        writer.hand_over(refusal(0, "other"))  # another client: its own bound
        now[0] += 1  # the bound counts the second the requests came in, not the write's
        writer.flush()
        assert [s.request_id for s in store.written] == ["rc0", "rc1", "rc2", "rother0"]
        assert len(counted) == 6  # every refusal is still counted in the metrics
        writer.hand_over(refusal(9))
        writer.flush()
        assert store.written[-1].detail["suppressed"] == 2
        assert all(s.alone for s in store.written)  # each a flow of its own
    finally:
        writer.close()


def test_a_tied_refusal_is_bounded_only_where_its_endpoint_asks() -> None:
    """A refusal in a flow is written whatever the rate, unless its endpoint is ``bounded``
    (one a client may call in a loop)."""
    store = _FlakyStore()
    store.down = False
    writer = FlowWriter(store, interval=60, burst=1)  # type: ignore[arg-type]

    def tied(n: int) -> Trace:
        trace = _trace(f"t{n}", "ok", "refused", reason="code_replayed")
        trace.flow_id = "flow-1"
        return trace

    try:
        for n in range(3):
            writer.hand_over(tied(n))
        for n in range(3, 6):
            writer.hand_over(tied(n), bounded=True)
        writer.flush()
        requests = [s.request_id for s in store.written]
        assert requests == ["t0", "t0", "t1", "t1", "t2", "t2", "t3", "t3"]
        assert {s.flow_id for s in store.written} == {"flow-1"}
        assert not any(s.alone for s in store.written)
    finally:
        writer.close()


def test_the_writing_thread_lasts_while_steps_come_and_ends_when_they_stop() -> None:
    store = _FlakyStore()
    store.down = False
    writer = FlowWriter(store, interval=0.02)  # type: ignore[arg-type]
    try:
        writer.hand_over(_trace("first", "ok"))
        thread = writer._thread
        assert thread is not None
        # Steps keep coming for longer than the idle rounds (25 × 20 ms): one thread writes all.
        for n in range(40):
            writer.hand_over(_trace(f"r{n}", "ok"))
            time.sleep(0.02)
        assert writer._thread is thread and thread.is_alive()
        thread.join(timeout=5)  # then nothing comes: it ends by itself
        assert not thread.is_alive() and writer._thread is None
        assert len(store.written) == 41
        writer.hand_over(_trace("later", "ok"))  # a later step starts another
        assert writer._thread is not None and writer._thread is not thread
    finally:
        writer.close()
    assert store.written[-1].request_id == "later"


def test_a_flood_naming_a_new_client_each_time_is_bounded_by_its_reason() -> None:
    """A fresh metadata-document URL per request passes the bound per client; the bound per
    reason over every client stops it."""
    store = _FlakyStore()
    store.down = False
    counted: list[FlowStep] = []
    now = [100.0]
    writer = FlowWriter(
        store,  # type: ignore[arg-type]
        interval=60,
        burst=3,
        burst_overall=4,
        on_written=counted.extend,
        monotonic=lambda: now[0],
    )

    def refusal(client: str, reason: str = "client_document_fetch_failed") -> Trace:
        return _trace(f"f-{client}", "refused", client=client, reason=reason)

    try:
        for n in range(10):
            writer.hand_over(refusal(f"https://c.example/{n}.json"))
        writer.hand_over(refusal("other", reason="client_secret_wrong"))
        writer.flush()
        written = [s.request_id for s in store.written]
        assert written == [f"f-https://c.example/{n}.json" for n in range(4)] + ["f-other"]
        assert len(counted) == 11  # every refusal is still counted in the metrics
        now[0] += 1
        writer.hand_over(refusal("https://c.example/new.json"))
        writer.flush()
        assert store.written[-1].detail == {**store.written[0].detail, "suppressed_overall": 6}
        assert "suppressed" not in store.written[-1].detail
    finally:
        writer.close()
