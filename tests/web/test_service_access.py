"""The per-app service access (client_credentials grants) through the management API, the
registration-token API and the admin console: validation as problem+json, audit, OpenAPI."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from authgate.app import Services
from tests.conftest import Account, make_client
from tests.flows import RESOURCE, login, token_request
from tests.web.test_admin_api import APPS, assert_problem, audit_events, bearer
from tests.web.test_pages_admin import token as csrf

MCP = "https://mcp.example.com/mcp"


def cc_app(services: Services) -> Any:
    return make_client(services, grant_types=["client_credentials"], redirect_uris=[])


def test_put_and_get_service_access(client: TestClient, admin: Account, services: Services) -> None:
    app = cc_app(services)
    url = f"{APPS}/{app.id}/service-access"
    assert client.get(url, headers=bearer(admin)).json() == []
    assert client.get(f"{APPS}/{app.id}", headers=bearer(admin)).json()["service_access"] == []
    body = [{"resource": "https://API.example.com:443/", "scopes": ["read"]}, {"resource": MCP}]
    resp = client.put(url, json=body, headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    expected = [{"resource": RESOURCE, "scopes": ["read"]}, {"resource": MCP, "scopes": []}]
    assert resp.json() == expected  # canonical identifiers
    assert client.get(url, headers=bearer(admin)).json() == expected
    assert (
        client.get(f"{APPS}/{app.id}", headers=bearer(admin)).json()["service_access"] == expected
    )
    [event] = audit_events(services, "app.service_access_changed")
    assert event.target_id == app.id and event.actor_id == admin.user.id
    assert event.details == {"before": [], "after": expected}
    got = token_request(
        client,
        {"grant_type": "client_credentials", "resource": RESOURCE},
        basic=(app.id, app.secret),
    )
    assert got.status_code == 200 and got.json()["scope"] == "read"
    # Everything taken away.
    assert client.put(url, json=[], headers=bearer(admin)).json() == []
    assert len(audit_events(services, "app.service_access_changed")) == 2


def test_invalid_service_access_is_a_problem_and_changes_nothing(
    client: TestClient, admin: Account, alice: Account, services: Services
) -> None:
    app = cc_app(services)
    url = f"{APPS}/{app.id}/service-access"
    for body, detail in (
        ([{"resource": "https://nope.example.com"}], "not a registered resource"),
        ([{"resource": RESOURCE, "scopes": ["admin"]}], "defines no scope"),
        ([{"resource": "not a uri"}], "service_access"),
    ):
        problem = assert_problem(client.put(url, json=body, headers=bearer(admin)), 400)
        assert detail in problem["detail"] + str(problem.get("validations")), problem
    web = make_client(services, name="Web")  # no client_credentials grant type
    refused = client.put(
        f"{APPS}/{web.id}/service-access", json=[{"resource": RESOURCE}], headers=bearer(admin)
    )
    assert "client_credentials" in assert_problem(refused, 400, field="service_access")["detail"]
    assert_problem(client.put(url, json=[], headers=bearer(alice)), 403)
    assert_problem(client.get(url), 401)
    assert_problem(client.get(f"{APPS}/nope/service-access", headers=bearer(admin)), 404)
    found = services.store.get_app(app.id)
    assert found is not None and found.service_access == ()
    assert audit_events(services, "app.service_access_changed") == []


def test_openapi_lists_the_endpoint(client: TestClient) -> None:
    paths = client.get("/api/v2/openapi.json").json()["paths"]
    assert {"get", "put"} <= set(paths["/api/v2/oauth2-provider/apps/{app}/service-access"])


def test_initial_access_token_carries_service_access(
    client: TestClient, admin: Account, services: Services
) -> None:
    url = "/api/v2/oauth2-provider/registration-tokens"
    made = client.post(
        url,
        json={"name": "partner", "service_access": [{"resource": MCP, "scopes": ["read"]}]},
        headers=bearer(admin),
    )
    assert made.status_code == 201, made.text
    assert made.json()["service_access"] == [{"resource": MCP, "scopes": ["read"]}]
    listed = client.get(url, headers=bearer(admin)).json()
    assert listed[0]["service_access"] == [{"resource": MCP, "scopes": ["read"]}]
    bad = client.post(
        url,
        json={"name": "x", "service_access": [{"resource": MCP, "scopes": ["write"]}]},
        headers=bearer(admin),
    )
    assert_problem(bad, 400)
    assert len(client.get(url, headers=bearer(admin)).json()) == 1


def test_console_shows_grants_and_revokes(
    client: TestClient, admin: Account, services: Services
) -> None:
    app = cc_app(services)
    login(client, "admin", admin.password)
    page = client.get(f"/admin/apps/{app.id}").text
    assert 'id="no-service-access"' in page and 'id="grant-access-form"' in page
    # Without the CSRF token nothing changes.
    forged = client.post(f"/admin/apps/{app.id}/access/grant", data={"resource": RESOURCE})
    assert forged.status_code == 403
    found = services.store.get_app(app.id)
    assert found is not None and found.service_access == ()
    form = {"csrf_token": csrf(client), "resource": RESOURCE, "scopes": "read write"}
    done = client.post(f"/admin/apps/{app.id}/access/grant", data=form)
    assert done.status_code == 200 and "The access was granted" in done.text
    assert 'id="service-access"' in done.text and "read write" in done.text
    stored = services.store.get_app(app.id)
    assert stored is not None and [(e.resource, e.scopes) for e in stored.service_access] == [
        (RESOURCE, ("read", "write"))
    ]
    wrong = dict(form, csrf_token=csrf(client), scopes="admin")
    refused = client.post(f"/admin/apps/{app.id}/access/grant", data=wrong)
    assert refused.status_code == 400 and "defines no scope" in refused.text
    gone = client.post(
        f"/admin/apps/{app.id}/access/revoke",
        data={"csrf_token": csrf(client), "resource": RESOURCE},
    )
    assert gone.status_code == 200 and "The access was revoked" in gone.text
    found = services.store.get_app(app.id)
    assert found is not None and found.service_access == ()
    assert len(audit_events(services, "app.service_access_changed")) == 2
