"""Operators look flows up: the management API (``/api/v2/flows``), the admin console pages
and ``authgate flows`` (tests/cli/test_cli_flows.py), on flows made by real HTTP requests."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import flow_reasons
from tests.conftest import Account, Client
from tests.flows import (
    authorize,
    authorize_url,
    exchange_code,
    generate_pkce,
    login,
)

API = "/api/v2/flows"


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_token}"}


def failed_exchange(client: TestClient, app: Client) -> str:
    """A flow that ends refused (a wrong verifier); the code, for the secret checks."""
    code = authorize(client, app.id, challenge=generate_pkce().challenge)
    resp = exchange_code(
        client, code, client_id=app.id, client_secret=app.secret, verifier=generate_pkce().verifier
    )
    assert resp.status_code == 400
    client.app.state.flow_writer.flush()  # type: ignore[attr-defined]
    return code


def test_api_lists_filters_and_shows_a_flow(
    signed_in: TestClient, services: Services, admin: Account, alice: Account, confidential: Client
) -> None:
    code = failed_exchange(signed_in, confidential)
    page = signed_in.get(API, headers=bearer(admin), params={"client_id": confidential.id})
    assert page.status_code == 200
    body = page.json()
    assert body["count"] == 1
    flow = body["flows"][0]
    assert flow["client_id"] == confidential.id and flow["user_id"] == alice.user.id
    assert flow["last_reason"] == "pkce_verifier_mismatch" and flow["refusals"] == 1
    for params, count in [
        ({"reason": "pkce_verifier_mismatch"}, 1),
        ({"reason": "code_expired"}, 0),
        ({"user_id": alice.user.id}, 1),
        ({"refused": "true"}, 1),
        ({"refused": "false"}, 0),
        ({"client_id": "someone-else"}, 0),
        ({"since": "2999-01-01T00:00:00"}, 0),
    ]:
        found = signed_in.get(API, headers=bearer(admin), params=params).json()
        assert found["count"] == count, params
    one = signed_in.get(f"{API}/{flow['id']}", headers=bearer(admin))
    assert one.status_code == 200
    timeline = one.json()
    assert [s["kind"] for s in timeline["steps"]] == [
        "authorize",
        "consent",
        "code_issued",
        "token",
    ]
    assert timeline["steps"][3]["detail"]["client_auth"] == "client_secret_post"
    refused = timeline["steps"][-1]
    assert refused["reason"] == "pkce_verifier_mismatch"
    reason = flow_reasons.BY_CODE["pkce_verifier_mismatch"]
    assert (refused["explanation"], refused["fix"]) == (reason.explanation, reason.fix)
    # The reference of any of its requests finds the same flow.
    by_reference = signed_in.get(f"{API}/{refused['reference']}", headers=bearer(admin))
    assert by_reference.json()["flow"]["id"] == flow["id"]
    assert code not in one.text
    failing = signed_in.get(f"{API}/failing", headers=bearer(admin)).json()
    assert failing == [{"client_id": confidential.id, "refusals": 1}]
    reasons = signed_in.get(f"{API}/reasons", headers=bearer(admin)).json()
    assert [r["code"] for r in reasons] == [r.code for r in flow_reasons.REASONS]


def test_api_needs_an_admin_and_answers_404_for_an_unknown_flow(
    client: TestClient, admin: Account, alice: Account
) -> None:
    assert client.get(API).status_code == 401
    assert client.get(API, headers=bearer(alice)).status_code == 403
    missing = client.get(f"{API}/nothing-here", headers=bearer(admin))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get(API, headers=bearer(admin), params={"limit": 0}).status_code == 400


def test_console_search_timeline_and_failing_clients(
    client: TestClient, services: Services, admin: Account, alice: Account, confidential: Client
) -> None:
    login(client, alice.user.username, alice.password)
    failed_exchange(client, confidential)
    bad = client.get(authorize_url(confidential.id, redirect_uri="https://evil.example/cb"))
    reference = re.search(r'id="error-reference">([^<]+)<', bad.text)
    assert reference is not None
    client.app.state.flow_writer.flush()  # type: ignore[attr-defined]
    client.cookies.clear()
    login(client, admin.user.username, admin.password)

    page = client.get("/admin/flows")
    assert page.status_code == 200
    assert 'id="failing-clients"' in page.text
    failing = re.search(r'<ol id="failing-clients">(.*?)</ol>', page.text, re.S)
    assert failing is not None, page.text
    assert confidential.id in failing.group(1) and "<strong>2</strong>" in failing.group(1), (
        failing.group(1)
    )
    assert "2 flows." in page.text
    filtered = client.get("/admin/flows", params={"reason": "redirect_uri_not_registered"})
    assert "1 flow." in filtered.text and "redirect_uri_not_registered" in filtered.text
    # A reference alone opens its flow.
    found = client.get(
        "/admin/flows", params={"reference": reference.group(1)}, follow_redirects=False
    )
    assert found.status_code == 303
    timeline = client.get(found.headers["location"])
    assert timeline.status_code == 200
    assert 'data-reason="redirect_uri_not_registered"' in timeline.text
    assert flow_reasons.BY_CODE["redirect_uri_not_registered"].explanation in timeline.text
    missing = client.get("/admin/flows/nothing-here")
    assert missing.status_code == 404 and 'id="flow-missing"' in missing.text


def test_console_is_for_admins_only(client: TestClient, alice: Account) -> None:
    assert client.get("/admin/flows", follow_redirects=False).status_code in (302, 303)
    login(client, alice.user.username, alice.password)
    assert client.get("/admin/flows").status_code == 403
