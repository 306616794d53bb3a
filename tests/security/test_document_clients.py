"""Client ID Metadata Document clients under the operator's controls, attacked over real HTTP
(issue 16, item 4, and the consent page's smaller holes).

A stranger makes authgate load a document by naming its URL as ``client_id``; before, that
walked past every control an operator set for self-registered clients (switch, initial access
token, redirect-host allow-list, cap), was shown as "Verified" with its own logo, and left an
uncounted, never purged app row per URL. Sources: draft-ietf-oauth-client-id-metadata-document
§6 (security considerations: trust in the document's host, loopback redirect URIs
impersonating a name), RFC 7591 §5 (impersonation; logos), RFC 9700 §4.1 (redirect URIs of
self-registered clients), UTS #39 §4 (confusable detection), CSP3 §2.3.1 (source expressions)
and CWE-113 (header injection). Each test asserts the refusal, and what the database holds
afterwards: app rows, codes, grants and tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from authgate.app import Services
from authgate.config import Settings
from authgate.core import cleanup
from authgate.core.models import AuditQuery
from tests.clock import MovableClock
from tests.conftest import ISSUER, Account, Issued, issued, make_client
from tests.fetch.server import DocumentServer, Route, write_certificates
from tests.flows import (
    REDIRECT_URI,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    csrf_from,
    exchange_code,
    generate_pkce,
    login,
    token_request,
)
from tests.security.helpers import assert_error_page, snapshot
from tests.security.live import Live

SETTINGS = "/api/v2/oauth2-provider/settings"
PER_IP = 3


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentServer]:
    directory = tmp_path_factory.mktemp("tls")
    _, cert, key = write_certificates(directory)
    with DocumentServer(cert, key) as server:
        server.ca = directory / "ca.pem"
        yield server


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    docs.seen.clear()
    docs.routes.clear()
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1,localhost",
        fetch_ca_bundle=str(docs.ca),
        fetch_timeout_seconds=1,
        registration_rate_per_ip=PER_IP,
    )


def publish(
    docs: DocumentServer, path: str = "/client.json", host: str = "127.0.0.1", **fields: Any
) -> str:
    url = docs.url(path, host)
    document = {
        "client_id": url,
        "client_name": "Example MCP client",
        "logo_uri": "https://client.example.com/logo.png",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        **fields,
    }
    docs.routes[path] = Route.json(document, cache_control="max-age=600")
    return url


def put_settings(live: Live, admin: Account, **changes: Any) -> None:
    with live.client() as api:
        resp = api.put(
            SETTINGS, headers={"Authorization": f"Bearer {admin.api_token}"}, json=changes
        )
    assert resp.status_code == 200, resp.text


@contextmanager
def browser(live: Live, alice: Account) -> Iterator[httpx.Client]:
    with live.client() as client:
        login(client, alice.user.username, alice.password)
        yield client


def count(services: Services, sql: str) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def document_rows(services: Services) -> int:
    return count(services, "SELECT count(*) FROM apps WHERE metadata_document")


def page(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    return client.get(authorize_url(url, challenge=generate_pkce().challenge, **kwargs))


def assert_refused_everywhere(
    live: Live, services: Services, alice: Account, url: str, description: str
) -> None:
    """A signed-in user gets a page (no consent, no code), the token endpoint invalid_client,
    and the database holds nothing new."""
    with browser(live, alice) as user:
        before = snapshot(services)
        refused = page(user, url)
        assert_error_page(refused, 400, "invalid_client", description)
        assert 'id="consent-form"' not in refused.text
        data = {"grant_type": "authorization_code", "code": "agac_x", "client_id": url}
        assert_oauth_error(token_request(user, data), 401, "invalid_client", description)
    assert snapshot(services) == before
    assert issued(services, url) == Issued(0, 0, 0, 0, 0)


# The operator's switch, and initial access tokens


def test_switched_off_documents_are_refused_and_nothing_is_stored_or_fetched(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = publish(docs)
    put_settings(live, admin, client_metadata_documents_enabled=False)
    assert_refused_everywhere(live, services, alice, url, "does not accept client metadata")
    assert services.store.get_app(url) is None and document_rows(services) == 0
    assert docs.seen == []
    [event] = services.store.list_audit(AuditQuery(action="settings.updated"))[0]
    assert event.details["changed"] == ["documents_enabled"]
    assert event.details["documents_enabled"] is False
    with live.client() as anonymous:
        advertised = anonymous.get("/.well-known/oauth-authorization-server").json()
    assert "client_id_metadata_document_supported" not in advertised


def test_switching_off_also_stops_documents_already_stored(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = publish(docs)
    pkce = generate_pkce()
    with browser(live, alice) as user:
        code = authorize(user, url, challenge=pkce.challenge)
        put_settings(live, admin, client_metadata_documents_enabled=False)
        before = snapshot(services)
        resp = exchange_code(user, code, client_id=url, client_secret=None, verifier=pkce.verifier)
        assert_oauth_error(resp, 401, "invalid_client", "does not accept client metadata")
    assert snapshot(services) == before  # the code was not consumed, nothing issued
    assert issued(services, url).access == 0


def test_required_initial_access_token_closes_documents_to_unlisted_hosts(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    """A document cannot present an initial access token: while registration needs one, only
    hosts the operator listed may have document clients."""
    url = publish(docs)
    put_settings(live, admin, registration_initial_access_token_required=True)
    assert_refused_everywhere(live, services, alice, url, "initial access token")
    assert docs.seen == [] and document_rows(services) == 0
    put_settings(live, admin, client_metadata_document_hosts=["127.0.0.1"])
    with live.client() as anonymous:
        assert page(anonymous, url).headers["location"].startswith("/login")
    assert document_rows(services) == 1


# The redirect-host allow-list


def test_document_redirecting_off_the_allow_list_gets_no_consent_code_token_or_row(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    put_settings(live, admin, registration_redirect_hosts=["claude.ai", "cursor:"])
    url = publish(docs, redirect_uris=["https://claude.ai/callback", REDIRECT_URI])
    assert_refused_everywhere(live, services, alice, url, f"redirect URI {REDIRECT_URI}")
    assert services.store.get_app(url) is None
    # Within the list, a document is a client.
    allowed = publish(docs, "/allowed.json", redirect_uris=["https://claude.ai/callback"])
    with browser(live, alice) as user:
        resp = page(user, allowed, redirect_uri="https://claude.ai/callback")
    assert resp.status_code == 200 and 'id="consent-form"' in resp.text


def test_allow_list_set_later_stops_a_stored_document_client(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    url = publish(docs)
    pkce = generate_pkce()
    with browser(live, alice) as user:
        code = authorize(user, url, challenge=pkce.challenge)
        put_settings(live, admin, registration_redirect_hosts=["claude.ai"])
        before = snapshot(services)
        resp = exchange_code(user, code, client_id=url, client_secret=None, verifier=pkce.verifier)
        assert_oauth_error(resp, 401, "invalid_client", "not on a host this server accepts")
        assert_error_page(page(user, url), 400, "invalid_client", "not on a host")
    assert snapshot(services) == before
    assert issued(services, url).access == 0 and issued(services, url).consumed_codes == 0


# Document hosts: allow and deny lists


def test_denied_and_unlisted_document_hosts_are_never_fetched(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    put_settings(live, admin, client_metadata_document_denied_hosts=["localhost"])
    denied = publish(docs, host="localhost")
    assert_refused_everywhere(live, services, alice, denied, "documents from localhost")
    assert docs.seen == []
    put_settings(
        live,
        admin,
        client_metadata_document_denied_hosts=[],
        client_metadata_document_hosts=["*.example.com", "localhost"],
    )
    unlisted = publish(docs, "/unlisted.json")  # on 127.0.0.1
    assert_refused_everywhere(live, services, alice, unlisted, "documents from 127.0.0.1")
    assert docs.seen == [] and document_rows(services) == 0
    with live.client() as anonymous:
        assert page(anonymous, denied).headers["location"].startswith("/login")
    assert document_rows(services) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"client_metadata_document_hosts": ["cursor:"]}, id="scheme-is-no-host"),
        pytest.param({"client_metadata_document_denied_hosts": ["a;b"]}, id="not-a-host"),
        pytest.param({"client_metadata_max_clients": -1}, id="negative-cap"),
        pytest.param({"client_metadata_documents_enabled": "no"}, id="switch-string"),
    ],
)
def test_document_settings_refuse_invalid_values(
    live: Live, services: Services, admin: Account, body: dict[str, Any]
) -> None:
    before = snapshot(services)
    with live.client() as api:
        resp = api.put(SETTINGS, headers={"Authorization": f"Bearer {admin.api_token}"}, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert snapshot(services) == before


# Rows made by anonymous requests are bounded


def test_cap_refuses_the_next_new_document_and_the_table_stops_growing(
    live: Live, services: Services, docs: DocumentServer, admin: Account, alice: Account
) -> None:
    put_settings(live, admin, client_metadata_max_clients=2)
    urls = [publish(docs, f"/c{n}.json") for n in range(3)]
    with live.client() as anonymous:
        for url in urls[:2]:
            assert page(anonymous, url).headers["location"].startswith("/login")
    assert document_rows(services) == 2
    assert_refused_everywhere(live, services, alice, urls[2], "limit of metadata-document")
    assert document_rows(services) == 2 and services.store.get_app(urls[2]) is None
    assert docs.requests_to("/c2.json") == 0
    # The stored ones keep working.
    with live.client() as anonymous:
        assert page(anonymous, urls[0]).headers["location"].startswith("/login")


def test_new_documents_per_address_are_rate_limited(
    live: Live, services: Services, docs: DocumentServer
) -> None:
    urls = [publish(docs, f"/r{n}.json") for n in range(PER_IP + 2)]
    with live.client() as anonymous:
        for url in urls[:PER_IP]:
            assert page(anonymous, url).headers["location"].startswith("/login")
        before = snapshot(services)
        refused = page(anonymous, urls[PER_IP])
        assert_error_page(refused, 429, "temporarily_unavailable", "Too many new client")
        assert int(refused.headers["retry-after"]) > 0
        data = {"grant_type": "authorization_code", "code": "agac_x", "client_id": urls[-1]}
        resp = token_request(anonymous, data)
        assert_oauth_error(resp, 429, "temporarily_unavailable")
        assert int(resp.headers["retry-after"]) > 0
        # A stored document is no new load: not limited.
        assert page(anonymous, urls[0]).headers["location"].startswith("/login")
    assert snapshot(services).rows["apps"] == before.rows["apps"]
    assert document_rows(services) == PER_IP
    assert docs.requests_to(f"/r{PER_IP}.json") == 0
    events, _ = services.store.list_audit(AuditQuery(action="rate_limit.exceeded"))
    assert [e.target_id for e in events] == ["documents_ip"]


def test_unused_document_clients_expire_with_their_grants(
    live: Live,
    services: Services,
    docs: DocumentServer,
    admin: Account,
    alice: Account,
    clock: MovableClock,
) -> None:
    """Purged like unused dynamically registered clients (client_ttl_days, 30 by default):
    any token request counts as use, so only a client nobody used for that long goes, with its
    grants; if it comes back, its document is loaded again and the user asked again."""
    stale, used = publish(docs, "/stale.json"), publish(docs, "/used.json")
    with browser(live, alice) as user:
        for url in (stale, used):
            pkce = generate_pkce()
            code = authorize(user, url, challenge=pkce.challenge)
            assert_token_response(
                exchange_code(user, code, client_id=url, client_secret=None, verifier=pkce.verifier)
            )
    clock.advance(days=20)
    with browser(live, alice) as user:
        pkce = generate_pkce()
        code = authorize(user, used, challenge=pkce.challenge)
        assert_token_response(
            exchange_code(user, code, client_id=used, client_secret=None, verifier=pkce.verifier)
        )
    clock.advance(days=11)
    report = cleanup.run(services.ctx, retention=timedelta(days=1), batch_size=100)
    assert report.deleted["clients"] == 1
    assert services.store.get_app(stale) is None and services.store.get_app(used) is not None
    assert issued(services, stale) == Issued(0, 0, 0, 0, 0)
    assert issued(services, used).grants == 2
    [event] = services.store.list_audit(AuditQuery(action="client.purged"))[0]
    assert event.target_id == stale and event.details["metadata_document"] is True


def test_the_cap_makes_room_by_purging_unused_documents(
    live: Live, services: Services, docs: DocumentServer, admin: Account, clock: MovableClock
) -> None:
    put_settings(live, admin, client_metadata_max_clients=1)
    first, second = publish(docs, "/first.json"), publish(docs, "/second.json")
    with live.client() as anonymous:
        assert page(anonymous, first).headers["location"].startswith("/login")
        assert_error_page(page(anonymous, second), 400, "invalid_client", "limit")
        clock.advance(days=31)
        assert page(anonymous, second).headers["location"].startswith("/login")
    assert services.store.get_app(first) is None
    assert [a.id for a in services.store.list_apps() if a.metadata_document] == [second]


# What the consent page says about a document client


def consent(live: Live, alice: Account, url: str, **kwargs: Any) -> httpx.Response:
    with browser(live, alice) as user:
        resp = page(user, url, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp


def identity(resp: httpx.Response) -> str:
    start = resp.text.index('id="identity"')
    return resp.text[start : resp.text.index("</p>", start)]


def test_loopback_only_document_is_a_program_on_the_device(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    resp = consent(live, alice, publish(docs))
    said = identity(resp)
    assert "Verified" not in resp.text
    assert "a program on your device that calls itself <strong>Example MCP client</strong>" in said
    assert "published at <strong>127.0.0.1</strong>" in said
    assert "logo.png" not in resp.text and "app-icon" not in resp.text
    assert (
        '<strong id="redirect-host">localhost:9876</strong> (a program on this device)' in resp.text
    )


def test_private_use_scheme_is_shown_by_its_scheme(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    url = publish(docs, redirect_uris=["cursor://anysphere.cursor-retrieval/oauth/callback"])
    resp = consent(
        live, alice, url, redirect_uri="cursor://anysphere.cursor-retrieval/oauth/callback"
    )
    assert "Verified" not in resp.text and "a program on your device" in identity(resp)
    assert 'the app that opens <strong id="redirect-host">cursor:</strong> links' in resp.text
    assert "form-action 'self' cursor:;" in resp.headers["content-security-policy"]
    assert "app-icon" not in resp.text


def test_document_sending_the_browser_to_another_host_is_not_published_by_its_host(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    url = publish(docs, redirect_uris=["https://client.example.com/callback"])
    resp = consent(live, alice, url, redirect_uri="https://client.example.com/callback")
    said = identity(resp)
    assert "Verified" not in resp.text and "published by" not in resp.text
    assert 'class="identity unverified" id="identity"' in resp.text
    assert "does not send you back to that host" in said
    assert "app-icon" not in resp.text


def test_document_redirecting_to_its_own_host_is_published_by_it_without_its_logo(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    own = docs.url("/callback")
    resp = consent(live, alice, publish(docs, redirect_uris=[own]), redirect_uri=own)
    assert "Verified: this app is published by <strong>127.0.0.1</strong>" in identity(resp)
    assert "logo.png" not in resp.text and "app-icon" not in resp.text
    assert (
        f"form-action 'self' https://127.0.0.1:{docs.port};"
        in resp.headers["content-security-policy"]
    )


def test_operator_app_keeps_its_logo(live: Live, services: Services, alice: Account) -> None:
    app = make_client(services, icon="https://acme.example/logo.png")
    resp = consent(live, alice, app.id)
    assert "Registered by the operator" in identity(resp)
    assert 'src="https://acme.example/logo.png"' in resp.text


def test_connected_apps_page_does_not_vouch_for_a_document_client(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    url = publish(docs)
    pkce = generate_pkce()
    with browser(live, alice) as user:
        code = authorize(user, url, challenge=pkce.challenge)
        assert_token_response(
            exchange_code(user, code, client_id=url, client_secret=None, verifier=pkce.verifier)
        )
        listed = user.get("/account/apps")
    assert listed.status_code == 200
    assert "not vouched for by the operator" in listed.text and url in listed.text
    assert "logo.png" not in listed.text


# The consent page's Content-Security-Policy


def test_idn_redirect_host_is_sent_in_ascii(live: Live, services: Services, alice: Account) -> None:
    app = make_client(services, redirect_uris=["https://bücher.example/cb"])
    resp = consent(live, alice, app.id, redirect_uri="https://bücher.example/cb")
    csp = resp.headers["content-security-policy"]
    assert "form-action 'self' https://xn--bcher-kva.example; frame-ancestors 'none'" in csp
    assert csp.isascii()
    assert '<span id="redirect-ascii">xn--bcher-kva.example</span>' in resp.text


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://a.example;script-src*/cb", id="semicolon"),
        pytest.param("https://a.example,x/cb", id="comma"),
        pytest.param("https://bü;cher.example/cb", id="non-latin-1-and-semicolon"),
        pytest.param("https://a_b.example/cb", id="underscore"),
        pytest.param("https://[v1.x]/cb", id="not-an-ipv6-address"),
    ],
)
def test_hostile_redirect_hosts_never_reach_the_header(
    live: Live, services: Services, admin: Account, alice: Account, uri: str
) -> None:
    # Registration refuses them now, through the API as through dynamic registration.
    before = snapshot(services)
    with live.client() as api:
        created = api.post(
            "/api/v2/oauth2-provider/apps",
            headers={"Authorization": f"Bearer {admin.api_token}"},
            json={"name": "Hostile", "redirect_uris": [uri]},
        )
        assert created.status_code == 400, created.text
        registered = api.post(
            "/oauth2/register",
            json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"},
        )
        assert_oauth_error(registered, 400, "invalid_redirect_uri", "valid host")
    assert snapshot(services) == before
    # One stored before hosts were checked: a page, no consent, and a clean header.
    app = make_client(services, name="Old app")
    services.store.update_app(replace_uris(services, app.id, uri))
    with browser(live, alice) as user:
        before = snapshot(services)
        resp = page(user, app.id, redirect_uri=uri)
        assert_error_page(resp, 400, "invalid_request", "valid host")
        post = user.post(authorize_url(app.id, redirect_uri=uri, challenge="x" * 43), data={})
        assert_error_page(post, 400, "invalid_request", "valid host")
    assert resp.headers["content-security-policy"].count(";") == 6
    assert "form-action 'self';" in resp.headers["content-security-policy"]
    assert snapshot(services) == before


def replace_uris(services: Services, app_id: str, uri: str) -> Any:
    import dataclasses

    stored = services.store.get_app(app_id)
    assert stored is not None
    return dataclasses.replace(stored, redirect_uris=(uri,))


# Look-alike names (UTS #39 confusable skeletons)


def test_cyrillic_copy_of_an_operator_app_name_is_flagged(
    live: Live, services: Services, docs: DocumentServer, alice: Account
) -> None:
    make_client(services, name="Acme Console")
    with live.client() as anonymous:
        resp = anonymous.post(
            "/oauth2/register",
            json={
                "client_name": "Acm\u0435 Console",  # Cyrillic small letter ie
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
            },
        )
    assert resp.status_code == 201, resp.text
    registered = consent(live, alice, resp.json()["client_id"])
    assert 'class="identity warning" id="identity" role="alert"' in registered.text
    document = consent(live, alice, publish(docs, client_name="\u0410cme C\u043ensole"))
    assert 'role="alert"' in identity(document) and "same name" in identity(document)
    other = consent(live, alice, publish(docs, "/other.json", client_name="Acme Console 2"))
    assert 'role="alert"' not in other.text
    assert csrf_from(other)
