"""The shipped known-client profiles (issue 17, item 5): the data file loads, every profile
says where its knowledge comes from, every pinned copy is a document of that client that the
real validation (``client_metadata.app_from_document``) accepts, and matching finds the client
a registration or a document belongs to, and nothing for a bare loopback callback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import cast

import pytest

from authgate.app import Services
from authgate.core import client_metadata, client_profiles
from authgate.core import registration_settings as rules
from authgate.core.client_profiles import Profile
from authgate.core.context import Context
from authgate.core.errors import ValidationFailed

REQUIRED = {"claude-ai", "claude-code", "chatgpt", "codex", "vscode", "cursor", "mcp-remote"}
NOW = datetime(2026, 12, 5, tzinfo=UTC)
# Pins whose grant_types list a grant authgate does not support: the negotiation
# (core/negotiation.py) drops it and keeps the rest.
DROPPED_GRANTS = {
    "claude-ai": ("urn:ietf:params:oauth:grant-type:jwt-bearer",),
    "vscode": ("urn:ietf:params:oauth:grant-type:device_code",),
}


def shipped() -> list[Profile]:
    return list(client_profiles.shipped())


def test_the_data_file_is_package_data_and_loads() -> None:
    text = resources.files("authgate.core").joinpath("data/client_profiles.json").read_text()
    raw = json.loads(text)
    assert raw["version"] == 1
    ids = [p["id"] for p in raw["profiles"]]
    assert len(ids) == len(set(ids)), "profile ids are unique"
    assert set(ids) >= REQUIRED
    assert {p.id for p in shipped()} == set(ids)
    assert any(i.startswith("mcp-python") for i in ids) and any("typescript" in i for i in ids)
    assert all(p.origin == "shipped" for p in shipped())


@pytest.mark.parametrize("profile", shipped(), ids=lambda p: p.id)
def test_every_profile_names_its_sources_and_redirects(profile: Profile) -> None:
    assert profile.sources and all(s.strip() for s in profile.sources)
    assert profile.quirks, "a profile says what is peculiar about the client"
    assert profile.redirect_hosts
    # The hosts are the settings' own syntax (one rule for host entries).
    assert rules.check_redirect_hosts(profile.redirect_hosts) == profile.redirect_hosts
    concrete = [u for u in profile.redirect_uris if "<" not in u]
    assert concrete and all(rules.redirect_allowed(u, profile.redirect_hosts) for u in concrete)


PINNED = [p for p in shipped() if p.pinned_document is not None]


def test_the_clients_with_public_documents_have_pins() -> None:
    assert {p.id for p in PINNED} >= {"claude-ai", "claude-code", "chatgpt", "codex", "vscode"}
    for profile in PINNED:
        assert profile.pinned_note, "a pin says what it is"
        assert profile.pinned_document is not None
        assert profile.pinned_document["client_id"] in profile.document_urls


@pytest.mark.parametrize("profile", PINNED, ids=lambda p: p.id)
def test_every_pin_is_a_document_the_real_validation_accepts(profile: Profile) -> None:
    url = profile.document_urls[0]
    app, dropped = client_metadata.read_document(
        url, client_metadata.pinned_body(profile), None, NOW, None
    )
    assert app.id == url and app.metadata_document
    assert "authorization_code" in app.grant_types
    assert dropped.get("grant_types", ()) == DROPPED_GRANTS.get(profile.id, ())
    assert all(rules.redirect_allowed(u, profile.redirect_hosts) for u in app.redirect_uris)
    assert (
        client_profiles.match(
            services_free_ctx(), url, app.name, app.redirect_uris, document=True, profiles=shipped()
        )
        == profile
    )


def services_free_ctx() -> Context:
    """``match`` with ``profiles`` given reads nothing from the context."""
    return cast(Context, object())


@pytest.mark.parametrize(
    ("name", "uris", "expected"),
    [
        pytest.param(
            "Visual Studio Code",
            ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
            "vscode",
            id="vscode-registration",
        ),
        pytest.param(
            "Cursor",
            [
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "http://localhost:8787/callback",
            ],
            "cursor",
            id="cursor-registration",
        ),
        pytest.param(
            "Claude", ["https://claude.ai/api/mcp/auth_callback"], "claude-ai", id="claude-dcr"
        ),
        pytest.param(
            "Claude Code (notes)",
            ["http://localhost:51234/callback"],
            "claude-code",
            id="claude-code-by-name",
        ),
        pytest.param(
            "MCP CLI Proxy", ["http://localhost:3334/oauth/callback"], "mcp-remote", id="mcp-remote"
        ),
        pytest.param(
            "Some tool", ["http://127.0.0.1:9000/callback"], None, id="bare-loopback-is-nobody"
        ),
        pytest.param(
            "Claude",
            ["https://claude.ai/api/mcp/auth_callback", "https://evil.example/cb"],
            None,
            id="one-foreign-redirect-is-not-claude",
        ),
    ],
)
def test_matching_a_registration(name: str, uris: list[str], expected: str | None) -> None:
    found = client_profiles.match(
        services_free_ctx(),
        "some-uuid",
        name,
        uris,
        document=False,
        profiles=shipped(),
    )
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"name": "X", "sources": []}, "sources"),
        ({"name": "X", "sources": ["s"], "redirect_hosts": ["javascript:alert(1)//"]}, None),
        ({"name": "", "sources": ["s"]}, "name"),
        ({"name": "X", "sources": ["s"], "quirks": ["a\x00b"]}, "profile"),
        ({"name": "X\x07", "sources": ["s"]}, "name"),
        ({"name": "X", "sources": ["s"], "document_urls": ["http://a.example/x"]}, None),
        (
            {
                "name": "X",
                "sources": ["s"],
                "document_urls": ["https://a.example/c.json"],
                "pinned_document": {"client_id": "https://b.example/c.json"},
            },
            "pinned_document",
        ),
    ],
)
def test_a_bad_profile_is_refused_with_the_field(
    value: dict[str, object], field: str | None
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client_profiles.parse(value, "operator", "x")
    assert caught.value.validations
    if field is not None:
        assert field in caught.value.validations


def test_an_operator_profile_overrides_the_shipped_one(services: Services) -> None:
    ctx = services.ctx
    before = client_profiles.get(ctx, "cursor")
    assert before.origin == "shipped"
    value = before.as_json() | {"quirks": ["Operator's note."]}
    services.store.set_setting(client_profiles.SETTING, {"cursor": value})
    after = client_profiles.get(ctx, "cursor")
    assert after.origin == "overridden" and after.quirks == ("Operator's note.",)
    assert [p.id for p in client_profiles.all_profiles(ctx)].count("cursor") == 1
    # A stored value this version cannot read is skipped: the shipped profile applies.
    services.store.set_setting(client_profiles.SETTING, {"cursor": {"name": 5}})
    assert client_profiles.get(ctx, "cursor").origin == "shipped"


def test_a_document_client_matches_by_its_url_only() -> None:
    """A document anyone publishes may list claude.ai's callback; it is not claude.ai."""
    ctx = services_free_ctx()
    claude_callback = ["https://claude.ai/api/mcp/auth_callback"]
    other = client_profiles.match(
        ctx,
        "https://evil.example/client.json",
        "Claude",
        claude_callback,
        document=True,
        profiles=shipped(),
    )
    assert other is None
    real = client_profiles.match(
        ctx,
        "https://claude.ai/oauth/mcp-oauth-client-metadata",
        "Claude",
        claude_callback,
        document=True,
        profiles=shipped(),
    )
    assert real is not None and real.id == "claude-ai"
