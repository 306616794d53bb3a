"""``authgate upstream``, run in-process on a temporary data directory: what it prints (text
and ``--json``, the API's shapes), the secret read from stdin, sealed, never printed, and the
audit events it leaves."""

from __future__ import annotations

import json

import pytest

from authgate.core.models import AuditQuery
from authgate.storage import SqlStore
from tests.cli.conftest import Cli

SECRET = "cli-upstream-secret-value"
ISSUER = "https://login.example.com/tenant"


def test_add_list_update_remove(migrated: Cli, store: SqlStore) -> None:
    added = migrated.json(
        "upstream", "add", "corp", "--display-name", "Corp SSO", "--issuer", ISSUER,
        "--client-id", "authgate", "--client-secret-stdin", "--create-users",
        "--allowed-domain", "Example.COM", "--admin-claim", "groups", "--admin-value", "admins",
        input=SECRET + "\n",
    )  # fmt: skip
    assert added["id"] == "corp" and added["has_client_secret"] is True
    assert added["allowed_domains"] == ["example.com"] and added["jit_create"] is True
    assert added["redirect_path"] == "/login/upstream/corp/callback"
    assert added["discovery_url"] == ISSUER + "/.well-known/openid-configuration"
    assert SECRET not in json.dumps(added)
    stored = store.get_upstream_provider("corp")
    assert stored is not None and stored.client_secret and SECRET not in stored.client_secret

    listed = migrated.ok("upstream", "list").stdout
    assert "corp" in listed and "Corp SSO" in listed and SECRET not in listed

    changed = migrated.json("upstream", "update", "corp", "--disabled", "--no-client-secret")
    assert changed["enabled"] is False and changed["has_client_secret"] is False
    text = migrated.ok("upstream", "update", "corp", "--scopes", "openid email").stdout
    assert "Updated upstream provider." in text and "openid email" in text

    bad = migrated.fails("upstream", "update", "corp", "--scopes", "email")
    assert "openid" in bad.stderr
    missing = migrated.fails("upstream", "add", "x", "--issuer", ISSUER, code=2)
    assert "--display-name" in missing.stderr

    assert migrated.json("upstream", "remove", "corp") == {"id": "corp", "deleted": True}
    assert store.get_upstream_provider("corp") is None
    migrated.fails("upstream", "remove", "corp")
    events, _ = store.list_audit(AuditQuery(limit=50))
    actions = [e.action for e in events if e.action.startswith("upstream_provider.")]
    assert actions == ["upstream_provider.deleted"] + ["upstream_provider.updated"] * 2 + [
        "upstream_provider.created"
    ]
    assert SECRET not in json.dumps([e.details for e in events])


def test_settings_never_print_an_upstream_client_secret(
    env: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = [{"id": "corp", "issuer": ISSUER, "client_secret": SECRET}]
    monkeypatch.setenv("AUTHGATE_UPSTREAM_PROVIDERS", json.dumps(configured))
    shown = env.json("settings")["upstream_providers"]
    assert json.loads(shown) == [
        {"id": "corp", "issuer": ISSUER, "client_secret": "(set, redacted)"}
    ]
    assert SECRET not in env.ok("settings").stdout
    monkeypatch.setenv("AUTHGATE_UPSTREAM_PROVIDERS", '[{"client_secret": "' + SECRET + '"')
    assert env.json("settings")["upstream_providers"] == "(set, not valid JSON)"


def test_the_cli_adds_a_github_provider(migrated: Cli, store: SqlStore) -> None:
    added = migrated.json(
        "upstream", "add", "github", "--kind", "github", "--display-name", "GitHub",
        "--issuer", "https://github.com", "--client-id", "Iv1.abc", "--client-secret-stdin",
        "--create-users", "--required-claim", "teams", "--required-value", "acme/mcp-users",
        input="github-oauth-app-secret" + "\n",
    )  # fmt: skip
    assert added["kind"] == "github" and added["scopes"] == "read:user user:email read:org"
    assert added["discovery_url"] is None and "github-oauth-app-secret" not in json.dumps(added)
    text = migrated.ok("upstream", "update", "github", "--enabled").stdout
    assert "Kind" in text and "github" in text
    bad = migrated.fails(
        "upstream", "add", "gh2", "--kind", "github", "--display-name", "GitHub",
        "--issuer", "https://github.com", "--client-id", "Iv1.abc",
    )  # fmt: skip
    assert "client_secret" in bad.stderr
    stored = store.get_upstream_provider("github")
    assert stored is not None and stored.kind == "github"
    assert store.get_upstream_provider("gh2") is None


def test_private_key_jwt_from_the_cli_jwks_certificate_and_rotation(
    migrated: Cli, store: SqlStore
) -> None:
    added = migrated.json(
        "upstream", "add", "entra", "--display-name", "Entra", "--issuer", ISSUER,
        "--client-id", "app-id", "--token-auth-method", "private_key_jwt",
        "--assertion-audience", "issuer",
    )  # fmt: skip
    assert added["token_auth_method"] == "private_key_jwt"
    assert added["assertion_audience"] == "issuer" and added["has_client_secret"] is False
    kid = added["assertion_key"]["kid"]
    assert added["assertion_key"]["jwks_uri"].endswith("/login/upstream/entra/jwks")
    stored = store.get_upstream_provider("entra")
    assert stored is not None and stored.assertion_key and stored.assertion_certificate

    document = migrated.json("upstream", "jwks", "entra")
    [jwk] = document["keys"]
    assert jwk["kid"] == kid and jwk["kty"] == "RSA" and "d" not in jwk
    text = migrated.ok("upstream", "jwks", "entra").stdout
    assert kid in text and "/login/upstream/entra/jwks" in text
    pem = migrated.ok("upstream", "certificate", "entra").stdout
    assert pem == stored.assertion_certificate
    as_json = migrated.json("upstream", "certificate", "entra")
    assert as_json["certificate"] == pem and as_json["kid"] == kid
    assert as_json["x5t"] == added["assertion_key"]["x5t"]
    shown = migrated.ok("upstream", "update", "entra", "--display-name", "Entra ID").stdout
    assert kid in shown and "PRIVATE" not in shown and stored.assertion_key not in shown

    rotated = migrated.json("upstream", "rotate-key", "entra")
    assert rotated["assertion_key"]["kid"] != kid
    events, _ = store.list_audit(AuditQuery(action="upstream_provider.key_rotated"))
    assert [e.details["previous_kid"] for e in events] == [kid]

    # Back to auto with a secret: the key goes, and nothing is left to print or rotate.
    auto = migrated.json(
        "upstream", "update", "entra", "--token-auth-method", "auto", "--client-secret-stdin",
        input=SECRET + "\n",
    )  # fmt: skip
    assert auto["token_auth_method"] is None and auto["assertion_key"] is None
    assert "private_key_jwt" in migrated.fails("upstream", "certificate", "entra").stderr
    migrated.fails("upstream", "jwks", "entra")
    migrated.fails("upstream", "rotate-key", "entra")
    refused = migrated.fails(
        "upstream", "update", "entra", "--token-auth-method", "private_key_jwt"
    )
    assert "client_secret" in refused.stderr
