"""What every attack in the catalogue checks afterwards: the exact refusal (an error page with
no ``Location``, or an OAuth JSON error) and that the database holds nothing new."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from authgate.app import Services
from tests.flows import csrf_from
from tests.http_types import HttpClient, Response

TABLES = (
    "users",
    "sessions",
    "api_tokens",
    "apps",
    "app_secrets",
    "authorization_codes",
    "grants",
    "access_tokens",
    "refresh_tokens",
    "resources",
    "signing_keys",
    "settings",
)


@dataclass(frozen=True)
class Snapshot:
    """Row counts of every table an attack could write to, and what is revoked or used."""

    rows: dict[str, int]
    revoked_grants: int
    revoked_access: int
    consumed_codes: int
    consumed_refresh: int


def snapshot(services: Services) -> Snapshot:
    with services.store.engine.connect() as conn:

        def count(sql: str) -> int:
            return int(conn.execute(sa.text(sql)).scalar_one())

        return Snapshot(
            rows={t: count(f"SELECT count(*) FROM {t}") for t in TABLES},
            revoked_grants=count("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL"),
            revoked_access=count("SELECT count(*) FROM access_tokens WHERE revoked_at IS NOT NULL"),
            consumed_codes=count(
                "SELECT count(*) FROM authorization_codes WHERE consumed_at IS NOT NULL"
            ),
            consumed_refresh=count(
                "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NOT NULL"
            ),
        )


def code_count(services: Services, app_id: str | None = None) -> int:
    sql = "SELECT count(*) FROM authorization_codes"
    with services.store.engine.connect() as conn:
        if app_id is None:
            return int(conn.execute(sa.text(sql)).scalar_one())
        return int(conn.execute(sa.text(sql + " WHERE app_id = :a"), {"a": app_id}).scalar_one())


def assert_error_page(
    resp: Response, status: int, error: str, description: str | None = None
) -> None:
    """An HTML error page for the person: never a redirect, never framable."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert "location" not in resp.headers, resp.headers.get("location")
    assert resp.headers["content-type"].startswith("text/html")
    assert f'<code id="error-code">{error}</code>' in resp.text, resp.text[:2000]
    if description is not None:
        assert description in resp.text, resp.text[:2000]
    assert_unframable(resp)


def assert_unframable(resp: Response) -> None:
    """RFC 6819 §4.4.1.9, RFC 9700 §4.16: pages say they must not be framed, both ways."""
    assert resp.headers["x-frame-options"] == "DENY"
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp, csp


def page_csrf(client: HttpClient, path: str = "/logout") -> str:
    """The session's CSRF token, read from a page's form."""
    return csrf_from(client.get(path))


def hidden(page: Response, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert match is not None, page.text[:2000]
    return match.group(1)
