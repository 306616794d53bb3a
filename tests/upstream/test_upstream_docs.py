"""docs/audit-events.md lists every upstream event and every detail it carries, and
docs/upstream-sign-in.md names every setting a provider has."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import get_args

from authgate.core.upstream.errors import Reason
from authgate.core.upstream.providers import ProviderSpec

DOCS = Path(__file__).parents[2] / "docs"
EVENTS = {
    "upstream_provider.created": {
        "display_name", "issuer", "client_id", "has_client_secret", "scopes", "allowed_domains",
        "link_by_verified_email", "jit_create", "required_claim", "admin_claim", "enabled",
        "token_auth_method", "assertion_audience", "assertion_kid",
    },
    "upstream_provider.updated": {"fields"},
    "upstream_provider.key_rotated": {"previous_kid", "kid", "not_after"},
    "upstream_provider.deleted": set(),
    "upstream.logged_in": {"provider", "idp"},
    "upstream.sign_in_refused": {"reason"},
    "upstream_identity.linked": {"provider", "subject", "method"},
    "user.role_mapped": {"provider", "claim", "is_admin"},
}  # fmt: skip


def _row(action: str) -> str:
    text = (DOCS / "audit-events.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith(f"| `{action}` |")]
    assert len(rows) == 1, action
    return rows[0]


def test_every_upstream_event_and_detail_is_documented() -> None:
    for action, details in EVENTS.items():
        named = set(re.findall(r"`([a-z_]+)`", _row(action)))
        assert details <= named, (action, details - named)


def test_every_refusal_reason_is_documented() -> None:
    named = set(re.findall(r"`([a-z_]+)`", _row("upstream.sign_in_refused")))
    assert set(get_args(Reason)) <= named


def test_every_provider_setting_is_documented() -> None:
    guide = (DOCS / "upstream-sign-in.md").read_text()
    for field in dataclasses.fields(ProviderSpec):
        assert f"`{field.name}`" in guide, field.name
