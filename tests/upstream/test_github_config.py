"""Configuring a GitHub provider (``kind`` "github"): the management API and the environment
(the CLI in tests/cli/test_cli_upstream.py) accept it with GitHub's own rules (a base URL,
GitHub's scopes, the claims a GitHub sign-in has, ``org`` and ``org/team-slug`` values, a
client secret), and refuse the rest with a problem that names the field and changes
nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.core.models import AuditQuery
from authgate.services import ConfigurationError, Services, apply_upstream_configuration
from tests.conftest import Account

API = "/api/v2/upstream-providers"
SECRET = "github-oauth-app-secret"
BODY = {
    "id": "github",
    "display_name": "GitHub",
    "kind": "github",
    "issuer": "https://github.com/",
    "client_id": "Iv1.0123456789abcdef",
    "client_secret": SECRET,
    "jit_create": True,
    "required_claim": "orgs",
    "required_values": ["acme"],
    "admin_claim": "teams",
    "admin_values": ["acme/authgate-admins"],
}


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_token}"}


def test_the_api_creates_a_github_provider_with_its_defaults(
    client: TestClient, services: Services, admin: Account
) -> None:
    created = client.post(API, json=BODY, headers=bearer(admin))
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["kind"] == "github" and body["issuer"] == "https://github.com"
    assert body["scopes"] == "read:user user:email read:org"  # read:org for the conditions
    assert body["discovery_url"] is None
    assert body["redirect_path"] == "/login/upstream/github/callback"
    assert SECRET not in created.text
    [event] = services.store.list_audit(AuditQuery(action="upstream_provider.created"))[0]
    assert event.details["kind"] == "github"

    # Without org or team conditions, the default scopes are GitHub's profile and addresses.
    plain = {k: v for k, v in BODY.items() if not k.startswith(("required", "admin"))}
    other = client.post(API, json=plain | {"id": "ghes", "issuer": "https://ghe.example.com"})
    assert other.status_code == 401  # no credentials: nothing created
    other = client.post(
        API, json=plain | {"id": "ghes", "issuer": "https://ghe.example.com"}, headers=bearer(admin)
    )
    assert other.status_code == 201, other.text
    assert other.json()["scopes"] == "read:user user:email"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"issuer": "https://github.com/enterprise"}, "issuer"),
        ({"issuer": "http://github.com"}, "issuer"),
        ({"scopes": "openid user:email"}, "scopes"),
        ({"scopes": "read:user"}, "scopes"),
        ({"required_claim": "groups", "required_values": ["staff"]}, "required_claim"),
        ({"required_values": ["acme/"]}, "required_claim"),
        ({"admin_values": ["acme"]}, "admin_claim"),  # a team needs "org/team-slug"
        ({"admin_values": ["acme/../../user"]}, "admin_claim"),
        ({"required_values": [f"org{i}" for i in range(10)]}, "required_claim"),
        ({"client_secret": None}, "client_secret"),
        ({"kind": "saml"}, "kind"),
    ],
)
def test_bad_github_settings_are_problems_that_change_nothing(
    client: TestClient, services: Services, admin: Account, change: dict[str, Any], field: str
) -> None:
    resp = client.post(API, json=BODY | change, headers=bearer(admin))
    if field == "kind":  # the schema's vocabulary refuses it first
        assert resp.status_code in (400, 422), resp.text
    else:
        assert resp.status_code == 400, resp.text
        assert field in resp.json()["validations"], resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert services.store.list_upstream_providers() == []
    assert services.store.list_audit(AuditQuery(action="upstream_provider.created"))[0] == []


def test_an_update_cannot_remove_a_github_apps_secret(
    client: TestClient, services: Services, admin: Account
) -> None:
    assert client.post(API, json=BODY, headers=bearer(admin)).status_code == 201
    resp = client.patch(f"{API}/github", json={"client_secret": ""}, headers=bearer(admin))
    assert resp.status_code == 400 and "client_secret" in resp.json()["validations"]
    stored = services.store.get_upstream_provider("github")
    assert stored is not None and stored.client_secret is not None


def test_the_environment_configures_github_idempotently(services: Services) -> None:
    configured = services.settings.model_copy(update={"upstream_providers": json.dumps([BODY])})
    first = Services(configured, services.store, services.ctx)
    assert apply_upstream_configuration(first) == ["github"]
    assert apply_upstream_configuration(first) == []  # the normalised values compare equal
    stored = services.store.get_upstream_provider("github")
    assert stored is not None and stored.kind == "github"
    bad = configured.model_copy(
        update={"upstream_providers": json.dumps([BODY | {"scopes": "openid"}])}
    )
    with pytest.raises(ConfigurationError, match="scopes"):
        apply_upstream_configuration(Services(bad, services.store, services.ctx))
