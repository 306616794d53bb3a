"""Every value a client can register is shown by every view of apps, without a 500.

A ``private_key_jwt`` client once made ``GET /api/v2/oauth2-provider/apps`` and ``authgate apps
list`` fail for everyone: the response shape did not know a value registration accepts. So the
clients here are generated from the registration rules themselves — ``core.registration_metadata``'s
``AUTH_METHODS`` and ``GRANTS``, ``core.models.ApplicationType``, the fields of
``ClientMetadata``, ``core.client_metadata``'s document rules and ``core.clients``' operator
rules — imported, never copied: a value added to them is registered here the next run, and
each view must then show it. The views: the management API (list and detail, over real HTTP),
``authgate apps list`` and ``apps show`` (JSON and text) and the console's apps list and app
page. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from joserfc.jwk import ECKey

from authgate.app import Services
from authgate.config import Settings
from authgate.core import client_metadata, clients, registration_metadata
from authgate.core.models import ApplicationType
from authgate.schemas import AppOut
from tests.cli.conftest import Cli
from tests.conftest import Account
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import generate_pkce, login
from tests.security.live import Live

APPS = "/api/v2/oauth2-provider/apps"
# A redirect URI fit for each application type (OpenID Connect Registration §2: web clients
# https and not localhost; native clients loopback or a private-use scheme).
REDIRECTS: dict[str, list[str]] = {
    "web": ["https://app.example/callback"],
    "native": ["http://127.0.0.1/callback", "com.example.app:/callback"],
}
# How the registration response names what the API calls otherwise.
VIEW_NAMES = {"client_id": "id", "client_name": "name", "logo_uri": "icon"}
EMPTY: dict[str, Any] = {"contacts": [], "scope": None, "jwks": None}


def _key() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "use": "sig"}, private=True)
    return dict(key.as_dict(private=False))


@dataclass
class Keys:
    """A private_key_jwt client's keys: inline, or a jwks_uri on the document server."""

    jwks: dict[str, Any]
    jwks_uri: str


# A sample of every optional field of a registration (RFC 7591 §2); the test fails if
# ClientMetadata grows a field without one here.
def samples(keys: Keys) -> dict[str, Any]:
    return {
        "client_uri": "https://app.example/",
        "logo_uri": "https://app.example/logo.png",
        "tos_uri": "https://app.example/tos",
        "policy_uri": "https://app.example/privacy",
        "contacts": ["ops@app.example"],
        "scope": "read write",
        "software_id": "b5e1c6f0-views",
        "software_version": "4.2.0",
        "jwks": keys.jwks,
        "jwks_uri": keys.jwks_uri,
    }


def method_extras(method: str, keys: Keys) -> list[dict[str, Any]]:
    """What a method needs besides itself: each way of giving keys for private_key_jwt."""
    if method == "private_key_jwt":
        return [{"jwks": keys.jwks}, {"jwks_uri": keys.jwks_uri}]
    return [{}]


def subsets(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(values)
    for size in range(1, len(ordered) + 1):
        yield from (list(c) for c in itertools.combinations(ordered, size))


@dataclass
class Shown:
    """An app that exists, and what every view must say of it (AppOut field → value)."""

    id: str
    origin: str
    expected: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer="http://testserver",
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=2,
        registration_rate_per_ip=0,
        registration_rate_global=0,
    )


def _expected_from_registration(info: dict[str, Any]) -> dict[str, Any]:
    """What the registration response says, under the API's names."""
    metadata_fields = [f.name for f in dataclasses.fields(registration_metadata.ClientMetadata)]
    expected: dict[str, Any] = {"id": info["client_id"]}
    for name in metadata_fields:
        view = VIEW_NAMES.get(name, name)
        assert view in AppOut.model_fields, f"the API does not show the registered {name!r}"
        # The response leaves out what was not registered; the API shows it empty.
        expected[view] = info.get(name, EMPTY.get(name, ""))
    method = info["token_endpoint_auth_method"]
    expected |= {
        "client_type": "public" if method == "none" else "confidential",
        "dynamically_registered": True,
        "metadata_document": False,
        "first_party": False,
        "require_pkce": True,
    }
    return expected


def register_all(http: httpx.Client, keys: Keys) -> list[Shown]:
    """One client per auth method × grant set (× way of giving keys), per application type,
    and one carrying every optional field; registration decides which are valid."""
    bodies: list[dict[str, Any]] = []
    for method in registration_metadata.AUTH_METHODS:
        for grants in subsets(registration_metadata.GRANTS):
            for extra in method_extras(method, keys):
                bodies.append(
                    {
                        "client_name": f"{method} {' '.join(grants)}",
                        "redirect_uris": REDIRECTS["web"],
                        "token_endpoint_auth_method": method,
                        "grant_types": grants,
                        **extra,
                    }
                )
    for kind in get_args(ApplicationType):
        bodies.append(
            {
                "client_name": f"A {kind} app <&>",
                "redirect_uris": REDIRECTS[kind],
                "application_type": kind,
                "token_endpoint_auth_method": "none",
            }
        )
    optional = {f.name for f in dataclasses.fields(registration_metadata.ClientMetadata)}
    optional -= {"redirect_uris", "token_endpoint_auth_method", "grant_types"}
    optional -= {"application_type", "client_name"}
    sample = samples(keys)
    missing = optional - set(sample)
    assert not missing, f"add a sample of the registrable field(s) {sorted(missing)}"
    for exclusive in ("jwks", "jwks_uri"):  # RFC 7591 §2: never both
        body = {k: v for k, v in sample.items() if k != exclusive}
        bodies.append(
            {
                **body,
                "client_name": f"Everything but {exclusive}",
                "redirect_uris": REDIRECTS["web"],
                "token_endpoint_auth_method": "private_key_jwt",
            }
        )
    shown = []
    for body in bodies:
        resp = http.post("/oauth2/register", json=body)
        assert resp.status_code in (201, 400), (body, resp.status_code, resp.text)
        if resp.status_code == 201:
            info = resp.json()
            shown.append(
                Shown(info["client_id"], "registration", _expected_from_registration(info))
            )
    return shown


def publish_documents(http: httpx.Client, docs: DocumentServer, keys: Keys) -> list[Shown]:
    """A metadata-document client per auth method × grant set × application type, each made
    to exist the way a client does it: by naming its document at the authorization endpoint."""
    shown = []
    cases = itertools.product(
        client_metadata.AUTH_METHODS,
        subsets(client_metadata.ALLOWED_GRANTS),
        get_args(ApplicationType),
    )
    for number, (method, grants, kind) in enumerate(cases):
        url = docs.url(f"/client-{number}.json")
        document: dict[str, Any] = {
            "client_id": url,
            "client_name": f"Document {method} {kind}",
            "redirect_uris": REDIRECTS[kind],
            "token_endpoint_auth_method": method,
            "grant_types": grants,
            "application_type": kind,
            **method_extras(method, keys)[number % len(method_extras(method, keys))],
        }
        docs.routes[f"/client-{number}.json"] = Route.json(document)
        pkce = generate_pkce()
        resp = http.get(
            "/oauth2/authorize",
            params={
                "client_id": url,
                "response_type": "code",
                "redirect_uri": REDIRECTS[kind][0],
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
                "state": "s",
            },
        )
        if resp.status_code >= 400:
            continue  # a document the rules refuse (e.g. refresh_token alone)
        expected = {
            "id": url,
            "name": document["client_name"],
            "redirect_uris": document["redirect_uris"],
            "token_endpoint_auth_method": method,
            "grant_types": grants,
            "application_type": kind,
            "client_type": "public" if method == "none" else "confidential",
            "jwks": document.get("jwks"),
            "jwks_uri": document.get("jwks_uri", ""),
            "metadata_document": True,
            "dynamically_registered": False,
        }
        shown.append(Shown(url, "document", expected))
    return shown


def create_operator_apps(http: httpx.Client, token: str) -> list[Shown]:
    """An operator's app per client type × pinned method (or none) × grant set."""
    shown = []
    methods: list[str | None] = [None, *sorted(clients.AUTH_METHODS)]
    for client_type, method, grants in itertools.product(
        ("confidential", "public"), methods, list(subsets(clients.SUPPORTED_GRANTS))
    ):
        body = {
            "name": f"Operator {client_type} {method} {' '.join(grants)}",
            "redirect_uris": REDIRECTS["web"],
            "client_type": client_type,
            "token_endpoint_auth_method": method,
            "grant_types": grants,
        }
        resp = http.post(APPS, json=body, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code in (201, 400), (body, resp.status_code, resp.text)
        if resp.status_code == 201:
            made = resp.json()
            shown.append(Shown(made["id"], "operator", made))
    return shown


def _mismatches(where: str, app: Shown, shown: dict[str, Any]) -> list[str]:
    return [
        f"{where} {app.origin} {app.id}: {name} is {shown.get(name)!r}, registered {value!r}"
        for name, value in app.expected.items()
        if shown.get(name) != value
    ]


def _facts(text: str) -> dict[str, str]:
    """``authgate apps show``'s ``Label: value`` lines."""
    return dict(
        (label.strip(), value.strip())
        for label, sep, value in (line.partition(": ") for line in text.splitlines())
        if sep
    )


def _dd(page: str, ident: str) -> str | None:
    match = re.search(rf'<dd id="{ident}">(.*?)</dd>', page, re.S)
    return None if match is None else html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def check_console(live: Live, admin: Account, apps: list[Shown]) -> list[str]:
    problems = []
    with live.client() as browser:
        login(browser, admin.user.username, admin.password)
        listing = browser.get("/admin/apps")
        assert listing.status_code == 200, listing.text[:500]
        for app in apps:
            if html.escape(app.id) not in listing.text:
                problems.append(f"console list {app.origin}: {app.id} missing")
            page = browser.get("/admin/apps/" + _segment(app.id))
            if page.status_code != 200:
                problems.append(f"console page {app.id}: HTTP {page.status_code}")
                continue
            method = app.expected["token_endpoint_auth_method"]
            shown_method = _dd(page.text, "auth-method")
            wanted = method or "client_secret_basic or client_secret_post"
            if shown_method != wanted:
                problems.append(f"console page {app.id}: method {shown_method!r}, not {wanted!r}")
            grants = " ".join(app.expected["grant_types"])
            if _dd(page.text, "grant-types") != grants:
                problems.append(f"console page {app.id}: grants {_dd(page.text, 'grant-types')!r}")
            if html.escape(app.expected["name"]) not in page.text:
                problems.append(f"console page {app.id}: name missing")
            if app.origin != "operator":
                kind = _dd(page.text, "application-type")
                if kind != app.expected["application_type"]:
                    problems.append(f"console page {app.id}: application type {kind!r}")
            if method == "private_key_jwt":
                keys = _dd(page.text, "keys") or ""
                where = app.expected["jwks_uri"] or "k1"
                if where not in keys:
                    problems.append(f"console page {app.id}: keys {keys!r}")
                if 'id="new-secret"' in page.text:
                    problems.append(f"console page {app.id}: offers a secret to a key client")
    return problems


def _segment(app_id: str) -> str:
    from urllib.parse import quote

    return quote(app_id, safe="")


def check_cli(cli: Cli, apps: list[Shown], api: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    listed = {a["id"]: a for a in cli.json("apps", "list")}
    text = cli.ok("apps", "list").stdout
    for app in apps:
        if listed.get(app.id) != api[app.id]:
            problems.append(f"apps list --json {app.id}: {listed.get(app.id)!r} != API")
        row = next((line for line in text.splitlines() if line.startswith(app.id + " ")), "")
        if app.expected.get("name", "") not in row or app.expected["client_type"] not in row:
            problems.append(f"apps list {app.id}: row {row!r}")
        if cli.json("apps", "show", app.id) != api[app.id]:
            problems.append(f"apps show --json {app.id} differs from the API")
        facts = _facts(cli.ok("apps", "show", app.id).stdout)
        method = app.expected["token_endpoint_auth_method"]
        wanted = {
            "ID (client_id)": app.id,
            "Name": app.expected["name"],
            "Type": app.expected["client_type"],
            "Auth method": method or "client_secret_basic or _post",
            "Grant types": " ".join(app.expected["grant_types"]),
        }
        if app.origin != "operator":
            wanted["Application type"] = app.expected["application_type"]
        problems += [
            f"apps show {app.id}: {label} is {facts.get(label)!r}, not {value!r}"
            for label, value in wanted.items()
            if facts.get(label) != value
        ]
        if method == "private_key_jwt":
            where = app.expected["jwks_uri"] or "k1"
            if where not in facts.get("Keys", ""):
                problems.append(f"apps show {app.id}: Keys {facts.get('Keys')!r}")
    return problems


def test_every_registrable_value_is_shown_by_every_view(
    live: Live,
    services: Services,
    settings: Settings,
    admin: Account,
    docs: DocumentServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys({"keys": [_key()]}, docs.url("/jwks.json"))
    docs.routes["/jwks.json"] = Route.json(keys.jwks)
    with live.client() as http:
        apps = register_all(http, keys)
        apps += publish_documents(http, docs, keys)
        apps += create_operator_apps(http, admin.api_token)
        auth = {"Authorization": f"Bearer {admin.api_token}"}
        listing = http.get(APPS, headers=auth)
        assert listing.status_code == 200, listing.text[:1000]
        api = {a["id"]: a for a in listing.json()}
        problems = []
        for app in apps:
            detail = http.get(f"{APPS}/{_segment(app.id)}", headers=auth)
            assert detail.status_code == 200, (app.id, detail.text[:500])
            problems += _mismatches("API detail", app, detail.json())
            if api.get(app.id) != detail.json():
                problems.append(f"API list {app.id}: differs from its detail")

    # Every value of the rules was registered and shown at least once.
    seen = list(api.values())
    assert {a["token_endpoint_auth_method"] for a in seen} >= set(
        registration_metadata.AUTH_METHODS
    )
    assert {g for a in seen for g in a["grant_types"]} >= set(registration_metadata.GRANTS)
    assert {a["application_type"] for a in seen} >= set(get_args(ApplicationType))
    for name in (f.name for f in dataclasses.fields(registration_metadata.ClientMetadata)):
        assert any(a[VIEW_NAMES.get(name, name)] for a in seen), f"{name} never shown"
    assert {a["id"] for a in seen} >= {app.id for app in apps}
    assert any(a["metadata_document"] and a["jwks"] for a in seen)

    # The CLI on the same database, as an operator runs it next to the server.
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("AUTHGATE_ISSUER", settings.issuer)
    problems += check_cli(Cli(tmp_path / "cli"), apps, api)
    problems += check_console(live, admin, apps)
    assert len(apps) > 40, len(apps)
    assert not problems, "\n".join(problems)
