"""No stranger can lock a user out; an IPv6 /64 is one source.

Over HTTP against the app, each party with its own cookie jar and address (behind a trusted
proxy, the address is the last ``X-Forwarded-For`` entry): an attacker's wrong passwords from
one source slow that source down for that username (429 with ``Retry-After``) while the user
signing in from another source gets in at once; addresses in one IPv6 /64 count as one
source at sign-in, token, introspection and registration; the per-username cap counts only
sources that were slowed down themselves. The audit log and the database show who was
checked, refused and signed in. Time is a ``MovableClock``; no sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core.models import AuditEvent, AuditQuery
from authgate.core.rate_limits import source
from tests.clock import MovableClock
from tests.conftest import ISSUER, PASSWORD, Account, Client
from tests.flows import assert_oauth_error, refresh
from tests.http_types import Response
from tests.spec.test_rfc7591 import BASE, REGISTER
from tests.web.test_rate_limits import align

ATTEMPTS = 5  # the default AUTHGATE_SIGN_IN_ATTEMPTS_PER_USER
SOURCES = 3
PER_CLIENT = 3
REGISTRATIONS = 2
ATTACKER = "203.0.113.66"
VICTIM = "198.51.100.7"


@pytest.fixture
def settings(tmp_path: object, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        trust_proxy_headers=True,
        sign_in_sources_per_user=SOURCES,
        token_rate_per_client=PER_CLIENT,
        introspection_rate_per_client=PER_CLIENT,
        registration_rate_per_ip=REGISTRATIONS,
    )


#: A client per source address: ``parties("203.0.113.7")``.
Parties = Callable[[str], TestClient]


@pytest.fixture
def parties(client: TestClient) -> Iterator[Parties]:
    """Browsers or API clients, one per address, each with its own cookies."""
    made: list[TestClient] = []

    def at(address: str) -> TestClient:
        party = TestClient(client.app, base_url=ISSUER, headers={"X-Forwarded-For": address})
        made.append(party)
        return party

    yield at
    for party in made:
        party.close()


def sign_in(party: TestClient, username: str, password: str) -> Response:
    page = party.get("/login")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    form = {"username": username, "password": password, "csrf_token": csrf.group(1)}
    return party.post("/login", data=form, follow_redirects=False)


def assert_signed_in(resp: Response, party: TestClient) -> None:
    assert resp.status_code == 303, resp.text
    assert "authgate_session" in party.cookies


def assert_held(resp: Response, retry_after: int) -> None:
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == str(retry_after)
    assert "Too many sign-in attempts" in resp.text
    assert "authgate_session" not in resp.headers.get("set-cookie", "")


def audit(services: Services, action: str) -> list[AuditEvent]:
    found, _ = services.store.list_audit(AuditQuery(action=action, limit=500))
    return list(found)


def sessions_by_ip(services: Services) -> list[str | None]:
    with services.store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT ip FROM sessions"))]


def counters(services: Services, prefix: str) -> dict[str, int]:
    with services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, count FROM rate_limits WHERE key LIKE :p"), {"p": prefix + "%"}
        )
        return {key: int(count) for key, count in rows}


def test_wrong_passwords_from_one_source_do_not_lock_the_user_out(
    parties: Parties, services: Services, alice: Account, clock: MovableClock
) -> None:
    align(clock, minutes=15, second=15)
    attacker, victim = parties(ATTACKER), parties(VICTIM)
    for _ in range(ATTEMPTS):
        assert sign_in(attacker, "alice", "guess").status_code == 401
    # The attacker is held, whatever it sends, even from an IPv4-mapped IPv6 address...
    assert_held(sign_in(attacker, "alice", "guess"), 45)
    assert_held(sign_in(parties(f"::ffff:{ATTACKER}"), "alice", "guess"), 45)
    for _ in range(10):
        assert sign_in(attacker, "alice", "guess").status_code == 429
    assert_held(sign_in(attacker, "alice", PASSWORD), 45)
    # ...while the user, from elsewhere, signs in at once with the right password.
    resp = sign_in(victim, "alice", PASSWORD)
    assert_signed_in(resp, victim)
    failed = audit(services, "user.login_failed")
    assert len(failed) == ATTEMPTS  # refused attempts checked no password
    assert {(e.ip, e.target_id, e.details["reason"]) for e in failed} == {
        (ATTACKER, alice.user.id, "bad_password")
    }
    [logged_in] = audit(services, "user.logged_in")
    assert (logged_in.ip, logged_in.actor_id) == (VICTIM, alice.user.id)
    limited = audit(services, "rate_limit.exceeded")
    assert [(e.target_id, e.ip, e.details["limit"]) for e in limited] == [
        ("sign_in_user", ATTACKER, ATTEMPTS)
    ]
    assert sessions_by_ip(services) == [VICTIM]
    # One source was slowed down: far from the per-username cap.
    assert list(counters(services, "sign_in:user_sources:").values()) == [1]


def test_an_ipv6_64_is_one_source_at_sign_in(
    parties: Parties, services: Services, alice: Account, clock: MovableClock
) -> None:
    align(clock, minutes=15, second=15)
    # A host takes a new address of its /64 for every attempt: still one source.
    for n in range(1, ATTEMPTS + 1):
        assert sign_in(parties(f"2001:db8:a:b::{n:x}"), "alice", "guess").status_code == 401
    assert_held(sign_in(parties("2001:db8:a:b:ffff:1:2:3"), "alice", PASSWORD), 45)
    # The next /64 is another source.
    neighbour = parties("2001:db8:a:c::1")
    assert_signed_in(sign_in(neighbour, "alice", PASSWORD), neighbour)
    assert {e.ip for e in audit(services, "user.login_failed")} == {
        f"2001:db8:a:b::{n:x}" for n in range(1, ATTEMPTS + 1)
    }
    # The counters name the /64, never an address of it.
    keys = counters(services, "sign_in:source_user:60:")
    assert sorted(k.partition(":hmac-sha256:")[0] for k in keys) == [
        "sign_in:source_user:60:2001:db8:a:b::/64",
        "sign_in:source_user:60:2001:db8:a:c::/64",
    ], keys
    assert keys[next(k for k in keys if ":a:b::/64:" in k)] == ATTEMPTS + 1


def test_the_per_username_cap_counts_only_sources_slowed_down(
    parties: Parties, services: Services, alice: Account, clock: MovableClock
) -> None:
    align(clock, minutes=15, second=15)
    # Many sources, one wrong password each: none is slowed down, nothing is capped.
    for n in range(10):
        assert sign_in(parties(f"192.0.2.{n + 1}"), "alice", "guess").status_code == 401
    first = parties(VICTIM)
    assert_signed_in(sign_in(first, "alice", PASSWORD), first)
    # SOURCES sources, each slowed down first, hold the username everywhere...
    for n in range(SOURCES):
        guesser = parties(f"203.0.113.{n + 1}")
        for _ in range(ATTEMPTS):
            assert sign_in(guesser, "alice", "guess").status_code == 401
        assert_held(sign_in(guesser, "alice", "guess"), 45)
    later = parties("198.51.100.99")
    resp = sign_in(later, "alice", PASSWORD)
    assert_held(resp, 15 * 60 - 15)  # ...until the 15 minutes end: never longer
    assert "Please wait 15 minutes" in resp.text
    capped = [
        e
        for e in audit(services, "rate_limit.exceeded")
        if e.target_id is not None and e.target_id.endswith("sources")
    ]
    assert [(e.target_id, e.details["limit"], e.details["window_seconds"]) for e in capped] == [
        ("sign_in_user_sources", SOURCES, 900)
    ]
    assert capped[0].ip == f"203.0.113.{SOURCES}"
    assert len(audit(services, "user.logged_in")) == 1
    clock.advance(minutes=15)
    assert_signed_in(sign_in(later, "alice", PASSWORD), later)
    assert sorted(sessions_by_ip(services), key=str) == sorted([VICTIM, "198.51.100.99"])


def test_an_ipv6_64_is_one_source_at_the_token_endpoint(
    parties: Parties, services: Services, confidential: Client, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=30)

    def bogus_refresh(address: str) -> Response:
        return refresh(
            parties(address),
            "agrt_bogus",
            client_id=confidential.app.id,
            client_secret=confidential.secret,
        )

    for n in range(1, PER_CLIENT + 1):
        assert_oauth_error(bogus_refresh(f"2001:db8:1:2::{n}"), 400, "invalid_grant")
    resp = bogus_refresh("2001:db8:1:2:aaaa::1")
    assert_oauth_error(resp, 429, "temporarily_unavailable", "try again in")
    assert resp.headers["retry-after"] == "30"
    assert_oauth_error(bogus_refresh("2001:db8:1:3::1"), 400, "invalid_grant")
    client_id = confidential.app.id
    assert counters(services, "token:") == {
        f"token:client:{client_id}:ip:2001:db8:1:2::/64": PER_CLIENT + 1,
        f"token:client:{client_id}:ip:2001:db8:1:3::/64": 1,
    }
    [limited] = audit(services, "rate_limit.exceeded")
    assert (limited.target_id, limited.ip) == ("token_client", "2001:db8:1:2:aaaa::1")


def test_an_ipv6_64_is_one_source_at_introspection(
    parties: Parties, services: Services, confidential: Client, clock: MovableClock
) -> None:
    align(clock, minutes=1, second=30)
    auth = (confidential.app.id, confidential.secret or "")

    def introspect(address: str) -> Response:
        return parties(address).post("/oauth2/introspect", data={"token": "x"}, auth=auth)

    for n in range(1, PER_CLIENT + 1):
        resp = introspect(f"2001:db8:5::{n}")
        assert resp.status_code == 200 and resp.json() == {"active": False}, resp.text
    assert_oauth_error(introspect("2001:db8:5::ff"), 429, "temporarily_unavailable")
    assert introspect("2001:db8:6::1").json() == {"active": False}
    assert [e.target_id for e in audit(services, "rate_limit.exceeded")] == ["introspection_client"]
    assert set(counters(services, "introspection:")) == {
        f"introspection:client:{confidential.app.id}:ip:2001:db8:5::/64",
        f"introspection:client:{confidential.app.id}:ip:2001:db8:6::/64",
    }


def test_an_ipv6_64_is_one_source_at_registration(parties: Parties, services: Services) -> None:
    before = len(services.store.list_apps())

    def register(address: str) -> Response:
        return parties(address).post(REGISTER, json=BASE)

    for n in range(1, REGISTRATIONS + 1):
        assert register(f"2001:db8:7:8::{n}").status_code == 201
    resp = register("2001:db8:7:8:1::1")
    body = assert_oauth_error(resp, 429, "temporarily_unavailable")
    assert "try again" in body["error_description"]
    assert register("2001:db8:7:9::1").status_code == 201
    assert len(services.store.list_apps()) == before + REGISTRATIONS + 1
    [limited] = audit(services, "registration.rate_limited")
    assert (limited.target_id, limited.ip) == ("ip", "2001:db8:7:8:1::1")
    assert "registration:ip:2001:db8:7:8::/64" in counters(services, "registration:ip:")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("203.0.113.7", "203.0.113.7", id="ipv4-as-is"),
        pytest.param("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", id="ipv6-64"),
        pytest.param("2001:DB8:1:2::9", "2001:db8:1:2::/64", id="ipv6-normalised"),
        pytest.param("::ffff:203.0.113.7", "203.0.113.7", id="ipv4-mapped"),
        pytest.param("::1", "::/64", id="loopback-v6"),
        pytest.param("fe80::1%eth0", "fe80::/64", id="zone-id"),
        pytest.param("testclient", "testclient", id="not-an-address"),
        pytest.param("", "", id="empty"),
    ],
)
def test_source_of_an_address(address: str, expected: str) -> None:
    assert source(address) == expected
