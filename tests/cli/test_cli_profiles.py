"""``authgate profiles`` (list, show, set, pin, delete) and ``authgate test-client``, run
in-process on a temporary data directory: output (text and ``--json``), exit codes, what the
settings table holds and the audit events they leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from authgate.core import client_profiles
from authgate.core.models import AuditEvent, AuditQuery
from authgate.storage import SqlStore
from tests.cli.conftest import Cli

URL = "https://tool.example.com/oauth/client.json"


def events(store: SqlStore, action: str) -> list[AuditEvent]:
    found, _ = store.list_audit(AuditQuery(action=action, limit=200))
    return list(found)


def saved_profiles(store: SqlStore) -> dict[str, Any]:
    value = store.get_setting(client_profiles.SETTING)
    assert isinstance(value, dict), value
    return value


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def test_list_and_show_the_shipped_profiles(migrated: Cli) -> None:
    listed = migrated.json("profiles", "list")
    assert {p["id"] for p in listed} >= {"claude-ai", "chatgpt", "vscode", "cursor", "codex"}
    assert all(p["origin"] == "shipped" and p["sources"] for p in listed)
    text = migrated.ok("profiles", "list").stdout
    assert "claude-ai" in text and "PINNED" in text
    shown = migrated.ok("profiles", "show", "claude-ai").stdout
    assert "https://claude.ai/oauth/mcp-oauth-client-metadata" in shown
    assert "Sources:" in shown and "jwt-bearer" in shown
    missing = migrated.fails("profiles", "show", "nope")
    assert "No such client profile" in missing.stderr


def test_set_override_pin_and_delete(migrated: Cli, store: SqlStore, tmp_path: Path) -> None:
    profile = {
        "name": "Internal tool",
        "document_urls": [URL],
        "redirect_hosts": ["tool.example.com"],
        "sources": ["our own deployment"],
        "quirks": ["Sends no client_name."],
    }
    saved = migrated.json(
        "profiles", "set", "internal-tool", "--file", write(tmp_path, "p.json", profile)
    )
    assert saved["origin"] == "operator" and saved["pinned_document"] is None
    stored = saved_profiles(store)
    assert stored["internal-tool"]["name"] == "Internal tool"
    [event] = events(store, "client_profile.saved")
    assert event.target_id == "internal-tool" and event.details["origin"] == "operator"

    document = {
        "client_id": URL,
        "client_name": "Internal tool",
        "redirect_uris": ["https://tool.example.com/cb"],
    }
    pinned = migrated.json(
        "profiles", "pin", "internal-tool", "--file", write(tmp_path, "d.json", document)
    )
    assert pinned["pinned_document"] == document
    assert saved_profiles(store)["internal-tool"]["pinned_document"] == document
    [pin_event] = events(store, "client_profile.pinned")
    assert pin_event.details["document_url"] == URL and pin_event.details["pinned"] is True

    # A pin whose client_id is another URL is refused and changes nothing.
    other = write(tmp_path, "o.json", document | {"client_id": "https://evil.example/c.json"})
    refused = migrated.fails("profiles", "pin", "internal-tool", "--file", other)
    assert "client_id must be one of the document_urls" in refused.stderr
    assert saved_profiles(store)["internal-tool"]["pinned_document"] == document

    # Overriding a shipped profile, then reverting to it.
    cursor = migrated.json("profiles", "show", "cursor") | {"quirks": ["Ours."]}
    overridden = migrated.json(
        "profiles", "set", "cursor", "--file", write(tmp_path, "c.json", cursor)
    )
    assert overridden["origin"] == "overridden" and overridden["quirks"] == ["Ours."]
    migrated.ok("profiles", "delete", "cursor")
    assert migrated.json("profiles", "show", "cursor")["origin"] == "shipped"
    assert "cursor" not in saved_profiles(store)
    assert [e.target_id for e in events(store, "client_profile.deleted")] == ["cursor"]
    gone = migrated.fails("profiles", "delete", "claude-ai")
    assert "shipped profiles cannot be deleted" in gone.stderr


def test_set_refuses_a_profile_without_sources(
    migrated: Cli, store: SqlStore, tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.json", {"name": "No source", "sources": []})
    result = migrated.fails("profiles", "set", "nosource", "--file", bad)
    assert "sources" in result.stderr
    assert store.get_setting(client_profiles.SETTING) is None
    assert events(store, "client_profile.saved") == []


def test_test_client_explains_a_registration_body_and_an_app(
    migrated: Cli, store: SqlStore, tmp_path: Path
) -> None:
    good = {
        "client_name": "Cursor",
        "redirect_uris": [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "http://localhost:8787/callback",
        ],
        "token_endpoint_auth_method": "none",
    }
    text = migrated.ok("test-client", write(tmp_path, "good.json", good)).stdout
    assert text.startswith("registration body: ACCEPTED")
    assert (
        "Known client: Cursor (cursor)" in text
        and "May use authorization_code, refresh_token." in text
    )
    report = migrated.json("test-client", write(tmp_path, "good.json", good))
    assert report["verdict"] == "accepted" and report["registered"]["client_type"] == "public"

    device = good | {
        "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"]
    }
    dropped = migrated.ok("test-client", write(tmp_path, "device.json", device)).stdout
    assert "ACCEPTED" in dropped and "Dropped:" in dropped
    assert "grant type urn:ietf:params:oauth:grant-type:device_code is not supported" in dropped
    bad = good | {"redirect_uris": ["http://evil.example/cb"]}
    refused = migrated.run("test-client", write(tmp_path, "bad.json", bad))
    assert refused.exit_code == 1
    assert "REFUSED" in refused.stdout and "Refused:" in refused.stdout
    assert store.list_apps() == [], "a check stores nothing"

    app = json.loads(
        migrated.ok(
            "apps",
            "create",
            "--name",
            "Mine",
            "--redirect-uri",
            "https://mine.example/cb",
            "--json",
        ).stdout
    )
    shown = migrated.json("test-client", app["id"])
    assert shown["kind"] == "app" and shown["verdict"] == "accepted"
    assert shown["registered"]["redirect_uris"] == ["https://mine.example/cb"]
    assert migrated.fails("test-client", "no-such-app").stderr.strip().endswith("No such app")
