"""Fuzzing the HTML pages: every query parameter and form field, parsed strictly.

Every page route of ``web/routes.py`` gets generated query strings and (for a POST) forms
that carry the session's valid CSRF token, so the handler reaches its parsing; field names
come from the templates' own ``name="…"`` attributes and the values include the odd digits
("²", "٣") that ``str.isdigit`` accepts and ``int`` refuses. Path parameters are sometimes the
ids of real objects. On every response: no 5xx, and an HTML page or a redirect, never a
traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.context import SYSTEM
from authgate.core.upstream import providers
from authgate.web import routes
from tests.conftest import PASSWORD, Account, Client
from tests.flows import csrf_from, login
from tests.fuzz.conftest import KEYED_PROVIDER, budget

pytestmark = pytest.mark.leaks_presented_off

TEMPLATES = Path(routes.__file__).parent / "templates"
#: Every form field and query parameter some page reads, from the templates themselves.
FIELDS = sorted(
    set(re.findall(r'name="([a-z_]+)"', "".join(p.read_text() for p in TEMPLATES.glob("*.html"))))
    - {"csrf_token", "viewport", "referrer"}
    | {"page", "notice", "error"}
)
#: Pages that would end the fuzzing session itself (signing out); fuzzed elsewhere.
SPARED = {("POST", "/logout"), ("GET", "/logout")}
ODD = ["²", "٣", "1e3", "-1", "0x10", "9" * 40, " 7 ", "", "\u200b", "a\x00b", "%", "../"]
#: The values of the drop-downs (a real choice reaches the rules behind the parsing).
CHOICES = [*providers.AUTH_METHODS, *providers.AUDIENCES, *providers.KINDS]
#: Odd values twice as often as random text: they are what a parser trips over.
VALUES = st.one_of(
    st.sampled_from(ODD),
    st.sampled_from(ODD),
    st.sampled_from(CHOICES),
    st.text(max_size=40),
    st.integers().map(str),
)
#: Responses that are neither a page nor JSON: the certificate download.
DOWNLOADS = {"/admin/upstream/{provider_id}/certificate": "application/x-pem-file"}


def page_operations() -> list[tuple[str, str]]:
    found = []
    for route in routes.page_routes():
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD" and (method, route.path) not in SPARED:
                found.append((method, route.path))
    return found


def real_values(services: Services, alice: Account, app: Client) -> dict[str, list[str]]:
    """Ids of objects that exist (never the fuzzing admin's own user); upstream providers are
    made for it, one with a sealed secret, one with a private_key_jwt key, so their pages reach
    the edit, disable, delete, rotate and certificate routes, and /login/upstream/{id}/jwks."""
    providers.create_provider(services.ctx, SYSTEM, KEYED_PROVIDER)
    providers.create_provider(
        services.ctx,
        SYSTEM,
        providers.ProviderSpec(
            id="fuzzed",
            display_name="Fuzzed",
            issuer="https://idp.example.com",
            client_id="authgate",
            client_secret="fuzzing-secret",
            required_claim="groups",
            required_values=("staff",),
        ),
    )
    return {
        "provider_id": ["fuzzed", "keyed"],
        "provider": ["fuzzed", "keyed"],
        "app_id": [app.id],
        "secret_id": [s.id for s in services.store.list_secrets(app.id)],
        "user_id": [alice.user.id],
        "resource_id": [r.id for r in services.store.list_resources()],
    }


def fill(path: str, real: dict[str, list[str]], draw: Any) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        choices = real.get(name) or ["x"]
        value: str = draw(st.one_of(st.sampled_from(choices), st.text(min_size=1, max_size=20)))
        return quote(value, safe="")

    return re.sub(r"\{([a-z_]+)(?::path)?\}", one, path)


@pytest.mark.parametrize(("method", "path"), page_operations())
def test_page(
    method: str,
    path: str,
    client: TestClient,
    services: Services,
    admin: Account,
    alice: Account,
    confidential: Client,
    database_url: str,
) -> None:
    login(client, "admin", PASSWORD)
    csrf = csrf_from(client.get("/admin/users"))
    real = real_values(services, alice, confidential)

    @budget(database_url)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        url = fill(path, real, data.draw)
        fields = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, VALUES)))
        if method == "GET":
            resp = client.get(url, params=fields, follow_redirects=False)
        else:
            resp = client.post(url, data={**fields, "csrf_token": csrf}, follow_redirects=False)
        assert resp.status_code < 500, (method, url, fields, resp.text[:500])
        if 300 <= resp.status_code < 400:
            assert resp.headers["location"].startswith(("/", services.ctx.policy.issuer))
        elif resp.status_code == 200 and path in DOWNLOADS:
            assert resp.headers["content-type"].startswith(DOWNLOADS[path])
        elif path != "/branding.css":
            assert resp.headers["content-type"].startswith(("text/html", "application/json"))
            assert "Traceback" not in resp.text

    check()
    # The run stayed signed in as the administrator throughout.
    assert client.get("/admin/users", follow_redirects=False).status_code == 200


def test_odd_digits_in_the_audit_page_number(client: TestClient, admin: Account) -> None:
    login(client, "admin", PASSWORD)
    for odd in ("²", "٣", "-1", "9" * 40, ""):
        resp = client.get("/admin/audit", params={"page": odd})
        assert resp.status_code == 200, (odd, resp.text[:300])
        assert "Audit log" in resp.text


def test_odd_digits_in_numeric_form_fields_are_a_form_error(
    client: TestClient, admin: Account, services: Services
) -> None:
    login(client, "admin", PASSWORD)
    page = client.get("/admin/settings")
    before = services.store.get_setting("registration_max_clients")
    form = {"csrf_token": csrf_from(page), "enabled": "on", "redirect_hosts": ""}
    for odd in ("²", "٣", "1e3"):
        resp = client.post(
            "/admin/settings", data={**form, "max_clients": odd, "client_ttl_days": "30"}
        )
        assert resp.status_code == 400, resp.text[:300]
        assert 'id="form-error"' in resp.text and "whole number" in resp.text
    assert services.store.get_setting("registration_max_clients") == before
    created = client.post(
        "/admin/resources",
        data={
            "csrf_token": csrf_from(client.get("/admin/resources")),
            "identifier": "https://odd.example.com/mcp",
            "name": "Odd",
            "access_token_ttl": "²",
        },
    )
    assert created.status_code == 400 and "number of seconds" in created.text
    assert all(
        r.identifier != "https://odd.example.com/mcp" for r in services.store.list_resources()
    )
