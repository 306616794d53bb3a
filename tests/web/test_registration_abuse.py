"""The abuse controls of dynamic client registration (DESIGN.md §6): the off switch and its
settings API, initial access tokens, the redirect-host allow-list, the cap on registered
clients, rate limits per source address and overall, and the expiry of unused clients.

Time is a ``MovableClock``: rate-limit windows and client expiry are tested by moving it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core import client_expiry, name_collisions
from authgate.core import registration_settings as runtime_settings
from authgate.core.caches import Caches
from authgate.core.context import SYSTEM
from authgate.core.models import App
from authgate.core.registration_settings import SettingsChange
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Client
from tests.flows import (
    REDIRECT_URI,
    assert_oauth_error,
    assert_token_response,
    authorize,
    exchange_code,
    generate_pkce,
    login,
)
from tests.http_types import Response
from tests.spec.test_rfc7591 import REGISTER, events, registered, state

SETTINGS = "/api/v2/oauth2-provider/settings"
TOKENS = "/api/v2/oauth2-provider/registration-tokens"
METADATA = "/.well-known/oauth-authorization-server"
PUBLIC = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
DEFAULTS = {
    "dynamic_client_registration_enabled": True,
    "registration_initial_access_token_required": False,
    "registration_redirect_hosts": [],
    "registration_max_clients": 1000,
    "registration_client_ttl_days": 30,
    "client_metadata_documents_enabled": True,
    "client_metadata_document_hosts": [],
    "client_metadata_document_denied_hosts": [],
    "client_metadata_max_clients": 1000,
}


def auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_token}"}


def put_settings(client: TestClient, admin: Account, **changes: Any) -> dict[str, Any]:
    resp = client.put(SETTINGS, headers=auth(admin), json=changes)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def apps_now(services: Services) -> list[str]:
    return sorted(a.id for a in services.store.list_apps())


# The switch and the settings API


def test_settings_api_defaults_and_partial_update(
    client: TestClient, services: Services, admin: Account
) -> None:
    resp = client.get(SETTINGS, headers=auth(admin))
    assert resp.status_code == 200
    assert resp.json() == DEFAULTS
    body = put_settings(client, admin, registration_max_clients=5)
    assert body == {**DEFAULTS, "registration_max_clients": 5}
    assert client.get(SETTINGS, headers=auth(admin)).json() == body
    assert services.store.get_setting("registration_max_clients") == 5
    [event] = events(services, "settings.updated")
    assert event.actor_id == admin.user.id
    assert event.details["changed"] == ["max_clients"]
    # Setting the same value again changes nothing and audits nothing.
    put_settings(client, admin, registration_max_clients=5)
    assert len(events(services, "settings.updated")) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"registration_max_clients": -1}, id="negative-cap"),
        pytest.param({"registration_client_ttl_days": 99999}, id="ttl-too-long"),
        pytest.param({"registration_redirect_hosts": ["not a host"]}, id="bad-host"),
        pytest.param({"registration_redirect_hosts": "example.com"}, id="hosts-string"),
        pytest.param({"dynamic_client_registration_enabled": "yes"}, id="enabled-string"),
        pytest.param({"registration_enabled": False}, id="unknown-field"),
    ],
)
def test_settings_api_refuses_invalid_values(
    client: TestClient, services: Services, admin: Account, body: dict[str, Any]
) -> None:
    resp = client.put(SETTINGS, headers=auth(admin), json=body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["validations"]
    assert client.get(SETTINGS, headers=auth(admin)).json() == DEFAULTS
    assert events(services, "settings.updated") == []


def test_settings_api_is_for_administrators(client: TestClient, alice: Account) -> None:
    assert client.get(SETTINGS).status_code == 401
    assert client.get(SETTINGS, headers=auth(alice)).status_code == 403
    resp = client.put(
        SETTINGS, headers=auth(alice), json={"dynamic_client_registration_enabled": False}
    )
    assert resp.status_code == 403
    assert client.post(REGISTER, json=PUBLIC).status_code == 201  # still on


def test_switched_off(client: TestClient, services: Services, admin: Account) -> None:
    assert client.get(METADATA).json()["registration_endpoint"] == f"{ISSUER}/oauth2/register"
    put_settings(client, admin, dynamic_client_registration_enabled=False)
    before = state(services)
    resp = client.post(REGISTER, json=PUBLIC)
    assert resp.status_code == 403
    assert resp.headers["cache-control"] == "no-store"
    assert resp.json() == {
        "error": "access_denied",
        "error_description": "Dynamic client registration is disabled on this server",
    }
    # Not even a malformed body is looked at.
    assert_oauth_error(client.post(REGISTER, content=b"{"), 403, "access_denied")
    assert state(services) == before
    assert "registration_endpoint" not in client.get(METADATA).json()

    put_settings(client, admin, dynamic_client_registration_enabled=True)
    assert client.get(METADATA).json()["registration_endpoint"] == f"{ISSUER}/oauth2/register"
    assert client.post(REGISTER, json=PUBLIC).status_code == 201


def test_other_nodes_follow_within_the_cache_ttl(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    assert client.post(REGISTER, json=PUBLIC).status_code == 201  # this node read the settings
    # Another node (the same store, its own caches) switches it off.
    other_node = dataclasses.replace(services.ctx, caches=Caches())
    runtime_settings.update(other_node, SYSTEM, SettingsChange(enabled=False))
    assert client.post(REGISTER, json=PUBLIC).status_code == 201
    clock.advance(seconds=services.ctx.policy.cache_ttl.total_seconds())
    assert_oauth_error(client.post(REGISTER, json=PUBLIC), 403, "access_denied")


# Initial access tokens


def test_initial_access_token_required(
    client: TestClient, services: Services, admin: Account
) -> None:
    put_settings(client, admin, registration_initial_access_token_required=True)
    before = state(services)
    for headers in ({}, {"Authorization": "Bearer agiat_nope"}, auth(admin)):
        resp = client.post(REGISTER, json=PUBLIC, headers=headers)
        assert_oauth_error(resp, 401, "invalid_token", "initial access token")
        assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert state(services) == before

    created = client.post(TOKENS, headers=auth(admin), json={"name": "ci", "max_uses": 2})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    token = created.json()["token"]
    assert token.startswith("agiat_")
    token_id = created.json()["id"]
    # Stored as a hash only.
    stored = json.dumps(services.store.get_setting("registration_initial_access_tokens"))
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored

    iat = {"Authorization": f"Bearer {token}"}
    first = registered(client, PUBLIC, headers=iat)
    registered(client, PUBLIC, headers=iat)
    [listed] = client.get(TOKENS, headers=auth(admin)).json()
    assert listed["uses"] == 2 and listed["max_uses"] == 2 and "token" not in listed
    event = next(
        e for e in events(services, "client.registered") if e.target_id == first["client_id"]
    )
    assert event.details["initial_access_token_id"] == token_id
    before = state(services)
    assert_oauth_error(client.post(REGISTER, json=PUBLIC, headers=iat), 401, "invalid_token")
    assert state(services) == before
    [created_event] = events(services, "initial_access_token.created")
    assert token not in json.dumps(created_event.details)


def test_initial_access_token_expires_and_can_be_deleted(
    client: TestClient, services: Services, admin: Account, clock: MovableClock
) -> None:
    put_settings(client, admin, registration_initial_access_token_required=True)
    short = client.post(TOKENS, headers=auth(admin), json={"name": "s", "lifetime_seconds": 60})
    other = client.post(TOKENS, headers=auth(admin), json={"name": "o"})
    short_iat = {"Authorization": f"Bearer {short.json()['token']}"}
    other_iat = {"Authorization": f"Bearer {other.json()['token']}"}
    registered(client, PUBLIC, headers=short_iat)
    clock.advance(seconds=61)
    assert_oauth_error(client.post(REGISTER, json=PUBLIC, headers=short_iat), 401, "invalid_token")

    registered(client, PUBLIC, headers=other_iat)
    deleted = client.delete(f"{TOKENS}/{other.json()['id']}", headers=auth(admin))
    assert deleted.status_code == 204
    assert_oauth_error(client.post(REGISTER, json=PUBLIC, headers=other_iat), 401, "invalid_token")
    assert client.delete(f"{TOKENS}/{other.json()['id']}", headers=auth(admin)).status_code == 404
    assert [e.target_id for e in events(services, "initial_access_token.deleted")] == [
        other.json()["id"]
    ]
    # Not required any more: no token needed.
    put_settings(client, admin, registration_initial_access_token_required=False)
    registered(client, PUBLIC)


# Redirect-host allow-list


@pytest.mark.parametrize(
    ("uris", "allowed"),
    [
        pytest.param(["https://app.example.com/cb"], True, id="exact-host"),
        pytest.param(["https://a.b.trusted.example/cb"], True, id="wildcard-subdomain"),
        pytest.param(["cursor://anysphere.cursor-retrieval/cb"], True, id="private-scheme"),
        pytest.param(["https://evil.example.com/cb"], False, id="other-host"),
        pytest.param(["https://trusted.example/cb"], False, id="wildcard-is-subdomains-only"),
        pytest.param(["https://app.example.com.evil.net/cb"], False, id="suffix-trick"),
        pytest.param(["http://127.0.0.1:8080/cb"], False, id="loopback-unless-listed"),
        pytest.param(["vscode://x/cb"], False, id="other-scheme"),
        pytest.param(["https://app.example.com/cb", "https://evil.example.com/cb"], False, id="m"),
    ],
)
def test_redirect_host_allow_list(
    client: TestClient, services: Services, admin: Account, uris: list[str], allowed: bool
) -> None:
    hosts = ["App.Example.com", "*.trusted.example", "cursor:"]
    body = put_settings(client, admin, registration_redirect_hosts=hosts)
    assert body["registration_redirect_hosts"] == [
        "app.example.com",
        "*.trusted.example",
        "cursor:",
    ]
    before = state(services)
    resp = client.post(REGISTER, json={"redirect_uris": uris, "token_endpoint_auth_method": "none"})
    if allowed:
        assert resp.status_code == 201, resp.text
    else:
        assert_oauth_error(resp, 400, "invalid_redirect_uri", "not on a host")
        assert state(services) == before


def test_redirect_host_allow_list_holds_for_updates(client: TestClient, admin: Account) -> None:
    put_settings(client, admin, registration_redirect_hosts=["app.example.com"])
    body = registered(client, {"redirect_uris": ["https://app.example.com/cb"]})
    resp = client.put(
        body["registration_client_uri"],
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
        json={"client_id": body["client_id"], "redirect_uris": ["https://evil.example.com/cb"]},
    )
    assert_oauth_error(resp, 400, "invalid_redirect_uri")


# The cap


def test_cap_on_registered_clients(
    client: TestClient, services: Services, admin: Account, confidential: Client
) -> None:
    put_settings(client, admin, registration_max_clients=2)
    first = registered(client, PUBLIC)
    registered(client, PUBLIC)  # operator-created apps (`confidential`) do not count
    before = state(services)
    resp = client.post(REGISTER, json=PUBLIC)
    assert_oauth_error(resp, 403, "access_denied", "limit of dynamically registered clients")
    assert state(services) == before
    # Room again once a client deletes itself.
    deleted = client.delete(
        first["registration_client_uri"],
        headers={"Authorization": f"Bearer {first['registration_access_token']}"},
    )
    assert deleted.status_code == 204
    registered(client, PUBLIC)
    put_settings(client, admin, registration_max_clients=0)  # 0 = no limit
    registered(client, PUBLIC)


# Impersonation: the consent page flags a name an operator's app already uses


def test_name_collides_with_an_operator_app(
    client: TestClient, services: Services, confidential: Client
) -> None:
    def collides(name: str) -> bool:
        body = registered(client, {**PUBLIC, "client_name": name})
        app = services.store.get_app(body["client_id"])
        assert app is not None
        return name_collisions.name_collides(services.ctx, app)

    assert confidential.app.name == "Test app"
    assert collides("TEST APP")
    assert collides("\uff34est app ")  # fullwidth T: the same after NFKC
    assert not collides("Test app 2")
    assert not collides("Unique name")
    assert not collides("Unique name")  # another registered client is not an operator's app
    assert not name_collisions.name_collides(services.ctx, confidential.app)


# Rate limits


@pytest.fixture
def limited(settings: Settings, clock: MovableClock) -> Iterator[tuple[TestClient, Services]]:
    """A server allowing 3 registrations per address and 5 overall per hour, that takes the
    address from X-Forwarded-For (so a test can be several clients)."""
    tight = settings.model_copy(
        update={
            "registration_rate_per_ip": 3,
            "registration_rate_global": 5,
            "trust_proxy_headers": True,
        }
    )
    services = build_services(tight, clock=clock)
    with TestClient(create_app(tight, services=services), base_url=ISSUER) as client:
        yield client, services
    services.store.close()


def from_ip(client: TestClient, ip: str) -> Response:
    return client.post(REGISTER, json=PUBLIC, headers={"X-Forwarded-For": ip})


def seconds_to_next_hour(clock: MovableClock) -> int:
    elapsed = clock.now().timestamp() % 3600
    return max(1, math.ceil(3600 - elapsed))


def assert_rate_limited(resp: Response, clock: MovableClock, where: str) -> None:
    body = assert_oauth_error(resp, 429, "temporarily_unavailable", where)
    assert resp.headers["retry-after"] == str(seconds_to_next_hour(clock))
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "client_id" not in body


def test_rate_limit_per_address(limited: tuple[TestClient, Services], clock: MovableClock) -> None:
    client, services = limited
    for _ in range(3):
        assert from_ip(client, "203.0.113.7").status_code == 201
    before = apps_now(services)
    assert_rate_limited(from_ip(client, "203.0.113.7"), clock, "from this address")
    assert_rate_limited(from_ip(client, "203.0.113.7"), clock, "from this address")
    assert apps_now(services) == before
    # One audit event per window, not one per refused request.
    [event] = events(services, "registration.rate_limited")
    assert event.ip == "203.0.113.7" and event.target_id == "ip" and event.details["limit"] == 3
    # Another address is not affected.
    assert from_ip(client, "198.51.100.1").status_code == 201
    # The next window starts afresh.
    clock.advance(seconds=seconds_to_next_hour(clock))
    assert from_ip(client, "203.0.113.7").status_code == 201


def test_rate_limit_overall(limited: tuple[TestClient, Services], clock: MovableClock) -> None:
    client, services = limited
    for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
        assert from_ip(client, ip).status_code == 201
    before = apps_now(services)
    assert_rate_limited(from_ip(client, "192.0.2.5"), clock, "on this server")
    assert apps_now(services) == before
    [event] = events(services, "registration.rate_limited")
    assert event.target_id == "global" and event.details["limit"] == 5
    clock.advance(seconds=seconds_to_next_hour(clock))
    assert from_ip(client, "192.0.2.5").status_code == 201


def test_rate_limited_before_the_body_is_read(
    limited: tuple[TestClient, Services], clock: MovableClock
) -> None:
    """Malformed requests count too, and an address over its limit learns nothing more."""
    client, _ = limited
    for _ in range(3):
        bad = client.post(REGISTER, content=b"{", headers={"X-Forwarded-For": "203.0.113.9"})
        assert_oauth_error(bad, 400, "invalid_client_metadata")
    assert_rate_limited(from_ip(client, "203.0.113.9"), clock, "from this address")


# Expiry of unused clients


def use_client(client: TestClient, alice: Account, client_id: str) -> None:
    """A successful token request: what counts as use."""
    login(client, alice.user.username, alice.password)
    pkce = generate_pkce()
    code = authorize(client, client_id, challenge=pkce.challenge)
    resp = exchange_code(
        client, code, client_id=client_id, client_secret=None, verifier=pkce.verifier
    )
    assert_token_response(resp)


def test_unused_clients_are_purged(
    client: TestClient,
    services: Services,
    clock: MovableClock,
    alice: Account,
    confidential: Client,
) -> None:
    used = registered(client, PUBLIC)["client_id"]
    unused = registered(client, PUBLIC)["client_id"]
    clock.advance(days=20)
    use_client(client, alice, used)
    clock.advance(days=15)  # `unused`: 35 days since registration; `used`: 15 since its use

    stale = client_expiry.purge_stale_dynamic_apps(services.ctx, SYSTEM, dry_run=True)
    assert [a.id for a in stale] == [unused]
    assert services.store.get_app(unused) is not None  # a dry run deletes nothing
    assert events(services, "client.purged") == []

    # The first registration of the hour purges, on whichever node it lands.
    new = registered(client, PUBLIC)["client_id"]
    assert services.store.get_app(unused) is None
    for kept in (used, new, confidential.id):  # operator apps never expire
        assert services.store.get_app(kept) is not None
    [event] = events(services, "client.purged")
    assert event.target_id == unused and event.actor_type == "system"
    assert event.details["ttl_days"] == 30


def test_purge_runs_at_most_once_an_hour(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    registered(client, PUBLIC)  # this hour's purge has run
    now = clock.now()
    stale = App(
        id="stale-dynamic-app",
        name="Stale",
        icon="",
        redirect_uris=(REDIRECT_URI,),
        client_type="public",
        require_pkce=True,
        token_endpoint_auth_method="none",
        grant_types=("authorization_code",),
        scope=None,
        first_party=False,
        dynamically_registered=True,
        created_at=now - timedelta(days=40),
        updated_at=now - timedelta(days=40),
    )
    services.store.create_app(stale)
    registered(client, PUBLIC)
    assert services.store.get_app(stale.id) is not None
    clock.advance(hours=1)
    registered(client, PUBLIC)
    assert services.store.get_app(stale.id) is None


def test_ttl_zero_keeps_clients_forever(
    client: TestClient, services: Services, clock: MovableClock, admin: Account
) -> None:
    put_settings(client, admin, registration_client_ttl_days=0)
    old = registered(client, PUBLIC)["client_id"]
    clock.advance(days=400)
    assert client_expiry.purge_stale_dynamic_apps(services.ctx, SYSTEM) == []
    registered(client, PUBLIC)
    assert services.store.get_app(old) is not None


def test_purge_follows_the_configured_ttl(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    runtime_settings.update(services.ctx, SYSTEM, SettingsChange(client_ttl_days=2))
    app_id = registered(client, PUBLIC)["client_id"]
    clock.advance(days=1)
    assert client_expiry.purge_stale_dynamic_apps(services.ctx, SYSTEM) == []
    clock.advance(days=1, seconds=1)
    purged = client_expiry.purge_stale_dynamic_apps(services.ctx, SYSTEM)
    assert [a.id for a in purged] == [app_id]
    assert services.store.get_app(app_id) is None


def test_settings_default_when_stored_value_is_unusable(services: Services) -> None:
    services.store.set_setting("registration_max_clients", "lots")
    services.store.set_setting("dynamic_registration_enabled", None)
    loaded = runtime_settings.load(services.ctx)
    assert loaded == replace(runtime_settings.DEFAULTS)
