"""The console's identity-provider pages: list, add, edit, enable and disable, delete; every
change through ``core.upstream.providers`` (its rules, its audit events), the client secret
write-only (sealed, never on a page), refusals on the form in plain words and changing nothing.
"""

from __future__ import annotations

import html
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.context import SYSTEM
from authgate.core.models import AuditEvent, AuditQuery
from authgate.core.upstream import client_assertion, providers
from tests.conftest import PASSWORD, Account
from tests.flows import csrf_from, login

SECRET = "console-client-secret-0123456789"
ISSUER_URL = "https://idp.example.com/realms/staff"


@pytest.fixture
def admin_in(client: TestClient, admin: Account) -> TestClient:
    login(client, "admin", PASSWORD)
    return client


def events(services: Services, action: str | None) -> list[AuditEvent]:
    found, _ = services.store.list_audit(AuditQuery(action=action, limit=500))
    return list(found)


def form(client: TestClient, path: str = "/admin/upstream", **fields: Any) -> dict[str, Any]:
    values = {
        "csrf_token": csrf_from(client.get(path)),
        "id": "staff",
        "kind": "oidc",
        "display_name": "Staff SSO",
        "issuer": ISSUER_URL,
        "client_id": "authgate-console",
        "client_secret": SECRET,
        "scopes": "openid email profile groups",
        "allowed_domains": "Example.com\n\nexample.org ",
        "jit_create": "on",
        "required_claim": "groups",
        "required_values": "staff\nops",
        "admin_claim": "groups",
        "admin_values": "authgate-admins",
        "enabled": "on",
    }
    return {k: v for k, v in (values | fields).items() if v is not None}


def create(client: TestClient, **fields: Any) -> Any:
    return client.post("/admin/upstream", data=form(client, **fields), follow_redirects=False)


def test_add_a_provider_stores_it_sealed_and_audits_it(
    admin_in: TestClient, services: Services
) -> None:
    resp = create(admin_in)
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/admin/upstream/staff?notice=provider-created"
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None
    assert (stored.display_name, stored.kind, stored.issuer) == ("Staff SSO", "oidc", ISSUER_URL)
    assert stored.allowed_domains == ("example.com", "example.org")
    assert stored.jit_create and not stored.link_by_verified_email and stored.enabled
    assert (stored.required_claim, stored.required_values) == ("groups", ("staff", "ops"))
    assert (stored.admin_claim, stored.admin_values) == ("groups", ("authgate-admins",))
    assert stored.client_secret is not None and SECRET not in stored.client_secret
    assert providers.client_secret(services.ctx, stored) == SECRET
    [event] = events(services, "upstream_provider.created")
    assert event.target_id == "staff" and event.details["has_client_secret"] is True
    assert SECRET not in str(event.details)

    page = admin_in.get(resp.headers["location"])
    assert page.status_code == 200
    assert "The identity provider was added" in page.text
    assert "http://testserver/login/upstream/staff/callback" in page.text
    assert SECRET not in page.text
    assert 'name="remove_client_secret"' in page.text
    listing = admin_in.get("/admin/upstream")
    row = listing.text.split('id="provider-staff"')[1].split("</tr>")[0]
    assert "Staff SSO" in row and ISSUER_URL in row and "enabled" in row
    assert "creates users (example.com, example.org)" in row
    assert "requires groups: staff, ops" in row and "admins by groups: authgate-admins" in row
    assert 'aria-current="page"' in listing.text.split("Identity providers</a>")[0][-200:]


def test_the_kinds_offered_are_the_kinds_core_knows(admin_in: TestClient) -> None:
    page = admin_in.get("/admin/upstream").text
    select = page.split('<select id="up-kind" name="kind">')[1].split("</select>")[0]
    offered = [part.split('"')[0] for part in select.split('value="')[1:]]
    assert offered == list(providers.KINDS)


def test_add_a_github_provider_with_a_team_condition(
    admin_in: TestClient, services: Services
) -> None:
    resp = create(
        admin_in,
        id="github",
        kind="github",
        display_name="GitHub",
        issuer="https://github.com/",
        client_id="Iv1.0123456789abcdef",
        scopes="",
        allowed_domains="",
        required_claim="teams",
        required_values="acme/mcp-users",
        admin_claim="teams",
        admin_values="acme/authgate-admins",
    )
    assert resp.status_code == 303, resp.text
    stored = services.store.get_upstream_provider("github")
    assert stored is not None
    assert (stored.kind, stored.issuer) == ("github", "https://github.com")
    # GitHub's default scopes, with read:org because the conditions name teams.
    assert set(stored.scopes.split()) == {"read:user", "user:email", "read:org"}
    assert (stored.required_claim, stored.required_values) == ("teams", ("acme/mcp-users",))
    [event] = events(services, "upstream_provider.created")
    assert event.details["kind"] == "github" and SECRET not in str(event.details)
    page = admin_in.get("/admin/upstream/github").text
    assert "github" in page and SECRET not in page
    # A GitHub provider is never given openid: refused on the form, nothing changed.
    path = "/admin/upstream/github"
    refused = admin_in.post(
        path, data=form(admin_in, path, id=None, kind=None, scopes="openid user:email")
    )
    assert refused.status_code == 400 and "openid" in html.unescape(refused.text)
    again = services.store.get_upstream_provider("github")
    assert again is not None and again.scopes == stored.scopes


@pytest.mark.parametrize(
    ("fields", "label", "words"),
    [
        pytest.param({"id": "Not A Slug"}, "ID", "1-40 characters", id="id"),
        pytest.param({"kind": "saml"}, "Kind", "one of: oidc", id="kind"),
        pytest.param({"issuer": "http://idp.example.com"}, "Issuer", "https URL", id="issuer"),
        pytest.param({"scopes": "email profile"}, "Scopes", "include 'openid'", id="scopes"),
        pytest.param({"display_name": " "}, "Button text", "1-64 characters", id="name"),
        pytest.param({"allowed_domains": "not a domain"}, "Allowed email domains", "", id="dom"),
        pytest.param({"required_values": ""}, "Required claim", "at least one", id="values"),
        pytest.param({"jit_create": "yes"}, "Create users", "ticked or not", id="box"),
        pytest.param({"enabled": "true"}, "Enabled", "ticked or not", id="enabled-box"),
        pytest.param({"client_secret": " padded "}, "Client secret", "no spaces", id="secret"),
        pytest.param(
            {"remove_client_secret": "on"}, "Remove the client secret", "not both", id="rm"
        ),
    ],
)
def test_a_refused_form_says_why_in_plain_words_and_changes_nothing(
    admin_in: TestClient, services: Services, fields: dict[str, str], label: str, words: str
) -> None:
    resp = create(admin_in, **fields)
    assert resp.status_code == 400, resp.text
    error = html.unescape(resp.text.split('id="form-error"')[1].split("</div>")[0])
    assert "The provider was not saved" in error
    assert f"<code>{label}</code>" in error and words in error
    assert SECRET not in resp.text  # the typed secret is not sent back
    assert 'value="authgate-console"' in resp.text  # the rest of the form is
    assert services.store.list_upstream_providers() == []
    assert events(services, "upstream_provider.created") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "https://a.example.com"),
        ("allowed_domains", "example.com"),
        ("client_secret", "s3cret-value"),
        ("id", "other"),
    ],
)
def test_a_repeated_field_is_refused(
    admin_in: TestClient, services: Services, field: str, value: str
) -> None:
    data = form(admin_in)
    body = "&".join(f"{k}={v}" for k, v in data.items() if k != field)
    body += f"&{field}={value}&{field}={value}"
    resp = admin_in.post(
        "/admin/upstream",
        content=body.replace("\n", "%0A"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400 and "sent more than once" in resp.text
    assert services.store.list_upstream_providers() == []


def test_a_taken_id_is_a_conflict_on_the_form(admin_in: TestClient, services: Services) -> None:
    assert create(admin_in).status_code == 303
    again = create(admin_in, display_name="Other")
    assert again.status_code == 409 and "already exists" in again.text
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and stored.display_name == "Staff SSO"


def test_edit_keeps_replaces_or_removes_the_secret(
    admin_in: TestClient, services: Services
) -> None:
    assert create(admin_in).status_code == 303
    path = "/admin/upstream/staff"
    kept = admin_in.post(
        path,
        data=form(admin_in, path, id=None, kind=None, client_secret="", display_name="Staff"),
        follow_redirects=False,
    )
    assert kept.status_code == 303 and kept.headers["location"].endswith("notice=provider-saved")
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and stored.display_name == "Staff"
    assert providers.client_secret(services.ctx, stored) == SECRET
    [updated] = events(services, "upstream_provider.updated")
    assert updated.details["fields"] == ["display_name"]

    replaced = admin_in.post(path, data=form(admin_in, path, client_secret="new-secret-value"))
    assert replaced.status_code == 200
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and providers.client_secret(services.ctx, stored) == (
        "new-secret-value"
    )
    assert "new-secret-value" not in replaced.text
    assert all("new-secret-value" not in str(e.details) for e in events(services, None))

    removed = admin_in.post(
        path, data=form(admin_in, path, client_secret="", remove_client_secret="on")
    )
    assert removed.status_code == 200
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and stored.client_secret is None
    assert 'name="remove_client_secret"' not in removed.text
    assert "none stored: a public client" in removed.text


def test_edit_refusal_keeps_the_stored_provider(admin_in: TestClient, services: Services) -> None:
    assert create(admin_in).status_code == 303
    before = services.store.get_upstream_provider("staff")
    path = "/admin/upstream/staff"
    resp = admin_in.post(path, data=form(admin_in, path, admin_values="", client_secret="x" * 20))
    assert resp.status_code == 400
    assert "<code>Administrator claim</code>" in resp.text and "x" * 20 not in resp.text
    assert services.store.get_upstream_provider("staff") == before
    assert events(services, "upstream_provider.updated") == []


def test_disable_enable_and_the_sign_in_page(admin_in: TestClient, services: Services) -> None:
    assert create(admin_in).status_code == 303
    csrf = csrf_from(admin_in.get("/admin/upstream"))
    off = admin_in.post("/admin/upstream/staff/disable", data={"csrf_token": csrf})
    assert off.status_code == 200 and "its button is gone" in off.text
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and not stored.enabled
    assert "Sign in with Staff SSO" not in TestClient(admin_in.app).get("/login").text
    on = admin_in.post("/admin/upstream/staff/enable", data={"csrf_token": csrf})
    assert on.status_code == 200
    assert "Sign in with Staff SSO" in TestClient(admin_in.app).get("/login").text
    changes = [e.details["fields"] for e in events(services, "upstream_provider.updated")]
    assert changes == [["enabled"], ["enabled"]]


def test_delete_needs_the_box_ticked(admin_in: TestClient, services: Services) -> None:
    assert create(admin_in).status_code == 303
    csrf = csrf_from(admin_in.get("/admin/upstream"))
    unticked = admin_in.post("/admin/upstream/staff/delete", data={"csrf_token": csrf})
    assert unticked.status_code == 400 and "Tick the box" in unticked.text
    assert services.store.get_upstream_provider("staff") is not None
    gone = admin_in.post(
        "/admin/upstream/staff/delete",
        data={"csrf_token": csrf, "confirm": "on"},
        follow_redirects=False,
    )
    assert gone.headers["location"] == "/admin/upstream?notice=provider-deleted"
    assert services.store.get_upstream_provider("staff") is None
    assert [e.target_id for e in events(services, "upstream_provider.deleted")] == ["staff"]


@pytest.mark.parametrize("verb", ["", "/enable", "/disable", "/delete", "/rotate-key"])
def test_an_unknown_provider_is_404(admin_in: TestClient, verb: str) -> None:
    csrf = csrf_from(admin_in.get("/admin/upstream"))
    for name in ("nope", "Not%20a%20slug"):
        path = f"/admin/upstream/{name}{verb}"
        resp = admin_in.post(path, data={"csrf_token": csrf, "confirm": "on"})
        assert resp.status_code == 404, path
        if not verb:
            assert admin_in.get(path).status_code == 404


def test_csrf_and_admins_only(
    client: TestClient, services: Services, admin: Account, alice: Account
) -> None:
    providers.create_provider(
        services.ctx,
        SYSTEM,
        providers.ProviderSpec(id="staff", display_name="S", issuer=ISSUER_URL, client_id="c"),
    )
    verbs = ("", "/disable", "/delete", "/rotate-key")
    paths = ["/admin/upstream", *(f"/admin/upstream/staff{v}" for v in verbs)]
    login(client, "alice", PASSWORD)
    alices = csrf_from(client.get("/account/apps"))
    assert client.get("/admin/upstream").status_code == 403
    for path in paths:
        assert client.post(path, data={"csrf_token": alices, "confirm": "on"}).status_code == 403
    client.cookies.clear()
    login(client, "admin", PASSWORD)
    for path in paths:
        assert client.post(path, data={"csrf_token": alices, "confirm": "on"}).status_code == 403
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and stored.enabled
    assert len(events(services, "upstream_provider.created")) == 1
    assert events(services, "upstream_provider.updated") == []


def test_private_key_jwt_on_the_console_key_certificate_and_rotation(
    admin_in: TestClient, services: Services
) -> None:
    resp = create(admin_in, client_secret=None, token_auth_method="private_key_jwt",
                  assertion_audience="issuer")  # fmt: skip
    assert resp.status_code == 303, resp.text
    stored = services.store.get_upstream_provider("staff")
    assert stored is not None and stored.client_secret is None
    assert (stored.token_auth_method, stored.assertion_audience) == ("private_key_jwt", "issuer")
    assert stored.assertion_key and stored.assertion_certificate

    page = admin_in.get("/admin/upstream/staff")
    kid = client_assertion.described(stored).kid  # type: ignore[union-attr]
    assert f'<code id="provider-kid">{kid}</code>' in page.text
    assert 'href="http://testserver/login/upstream/staff/jwks"' in page.text
    assert 'href="/admin/upstream/staff/certificate"' in page.text
    assert "authgate upstream rotate-key staff" in page.text
    assert "authgate upstream jwks staff --json" in page.text
    assert '<option value="private_key_jwt" selected>' in page.text
    assert '<option value="issuer" selected>' in page.text
    assert "PRIVATE KEY" not in page.text and stored.assertion_key not in page.text

    cert = admin_in.get("/admin/upstream/staff/certificate")
    assert cert.status_code == 200 and cert.text == stored.assertion_certificate
    assert cert.headers["content-disposition"] == 'attachment; filename="authgate-staff.pem"'

    rotated = admin_in.post(
        "/admin/upstream/staff/rotate-key", data={"csrf_token": csrf_from(page)},
        follow_redirects=False,
    )  # fmt: skip
    assert rotated.status_code == 303
    assert rotated.headers["location"] == "/admin/upstream/staff?notice=provider-key-rotated"
    after = services.store.get_upstream_provider("staff")
    assert after is not None and after.assertion_certificate != stored.assertion_certificate
    [event] = events(services, "upstream_provider.key_rotated")
    assert event.details["previous_kid"] == kid and event.actor_type == "user"

    # Saving the form unchanged keeps the key; a secret method needs the secret.
    unchanged = admin_in.post(
        "/admin/upstream/staff", data=form(admin_in, "/admin/upstream/staff", client_secret=None,
                                          token_auth_method="private_key_jwt",
                                          assertion_audience="issuer"),
        follow_redirects=False,
    )  # fmt: skip
    assert unchanged.status_code == 303, unchanged.text
    kept = services.store.get_upstream_provider("staff")
    assert kept is not None and kept.assertion_key == after.assertion_key
    refused = admin_in.post(
        "/admin/upstream/staff", data=form(admin_in, "/admin/upstream/staff", client_secret=None,
                                          token_auth_method="client_secret_basic"),
    )  # fmt: skip
    assert refused.status_code == 400
    assert "Client secret" in html.unescape(refused.text)
    switched = admin_in.post(
        "/admin/upstream/staff", data=form(admin_in, "/admin/upstream/staff",
                                          token_auth_method="client_secret_basic"),
        follow_redirects=False,
    )  # fmt: skip
    assert switched.status_code == 303, switched.text
    plain = services.store.get_upstream_provider("staff")
    assert plain is not None and plain.assertion_key is None and plain.client_secret
    assert 'id="assertion-key"' not in admin_in.get("/admin/upstream/staff").text
    assert admin_in.get("/admin/upstream/staff/certificate").status_code == 404
    again = admin_in.post(
        "/admin/upstream/staff/rotate-key",
        data={"csrf_token": csrf_from(admin_in.get("/admin/upstream/staff"))},
    )
    assert again.status_code == 409 and "does not use private_key_jwt" in again.text


def test_a_secret_with_private_key_jwt_is_refused_in_plain_words(
    admin_in: TestClient, services: Services
) -> None:
    resp = create(admin_in, token_auth_method="private_key_jwt")
    assert resp.status_code == 400
    text = html.unescape(resp.text)
    assert "Client secret" in text and "remove the client secret" in text
    assert SECRET not in resp.text
    assert services.store.get_upstream_provider("staff") is None
