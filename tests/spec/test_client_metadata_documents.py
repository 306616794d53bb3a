"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, as MCP uses
them): an https URL as client_id, fetched from a real HTTPS server on 127.0.0.1.

Every failure at the authorization endpoint is an HTML page, never a redirect (the
redirect_uri cannot be verified without a valid document), and at the token endpoint a 401
``invalid_client`` with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core import client_metadata, metadata
from authgate.core.models import AuditQuery
from authgate.core.policy import Policy
from tests.clock import MovableClock
from tests.conftest import ISSUER, issued
from tests.fetch.server import DocumentServer, Route, serve
from tests.flows import (
    REDIRECT_URI,
    RESOURCE,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    consent_page,
    exchange_code,
    generate_pkce,
    refresh,
    token_request,
)
from tests.http_types import Response

PATH = "/oauth/client.json"


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    (tmp_path / "tls").mkdir()
    yield from serve(tmp_path / "tls")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tmp_path / "tls" / "ca.pem"),
        fetch_timeout_seconds=1,
    )


def document(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Example MCP client",
        "client_uri": "https://client.example.com",
        "logo_uri": "https://client.example.com/logo.png",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        **fields,
    }


def publish(docs: DocumentServer, cache_control: str | None = "max-age=600", **fields: Any) -> str:
    url = docs.url(PATH)
    docs.routes[PATH] = Route.json(document(url, **fields), cache_control=cache_control)
    return url


def assert_error_page(resp: Response, description: str) -> None:
    """An HTML page for the person, and no redirect anywhere."""
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert "location" not in resp.headers
    assert "invalid_client" in resp.text or "invalid_request" in resp.text
    assert description in resp.text, resp.text


def authorize_page(client: TestClient, url: str, **kwargs: Any) -> Response:
    return client.get(
        authorize_url(url, challenge=generate_pkce().challenge, **kwargs), follow_redirects=False
    )


def test_full_flow_with_a_public_metadata_document_client(
    signed_in: TestClient, docs: DocumentServer, services: Services, clock: MovableClock
) -> None:
    url = publish(docs)
    pkce = generate_pkce()
    page = consent_page(signed_in, authorize_url(url, challenge=pkce.challenge, resource=RESOURCE))
    assert "Example MCP client" in page.text
    # Its redirect URI is loopback: a program on the user's device that claims a name, which
    # the document's host does not vouch for (DESIGN.md §7; tests/security/).
    assert "Verified" not in page.text
    assert "a program on your device that calls itself" in page.text
    assert "published at <strong>127.0.0.1</strong>" in page.text
    code = authorize(signed_in, url, challenge=pkce.challenge, resource=RESOURCE)
    body = assert_token_response(
        exchange_code(signed_in, code, client_id=url, client_secret=None, verifier=pkce.verifier)
    )
    assert "refresh_token" in body
    again = refresh(signed_in, body["refresh_token"], client_id=url, client_secret=None)
    assert_token_response(again)
    # One fetch served the consent page, the decision and both token requests (max-age=600).
    assert docs.requests_to(PATH) == 1
    assert docs.seen[0].host == f"127.0.0.1:{docs.port}"
    app = services.store.get_app(url)
    assert app is not None and app.metadata_document
    assert app.name == "Example MCP client"
    assert app.client_type == "public" and app.token_endpoint_auth_method == "none"
    assert app.redirect_uris == (REDIRECT_URI,)
    assert app.icon == "https://client.example.com/logo.png"
    assert app.client_uri == "https://client.example.com"
    assert app.require_pkce and not app.dynamically_registered and not app.first_party
    assert app.metadata_expires_at == clock.now() + timedelta(seconds=600)
    assert client_metadata.document_host(app) == "127.0.0.1"
    state = issued(services, url)
    assert (state.access, state.refresh, state.grants, state.consumed_codes) == (2, 2, 1, 1)
    events, _ = services.store.list_audit(AuditQuery(action="app.created", target_id=url))
    assert len(events) == 1 and events[0].actor_type == "system"
    assert events[0].details["metadata_document"] is True


def test_trailing_slash_and_query_are_allowed(client: TestClient, docs: DocumentServer) -> None:
    for path in ("/clients/app/", "/client?v=2"):
        url = docs.url(path)
        docs.routes[path] = Route.json(document(url))
        assert authorize_page(client, url).status_code == 302
        assert docs.requests_to(path) == 1


def test_client_name_defaults_to_the_host(
    client: TestClient, docs: DocumentServer, services: Services
) -> None:
    url = docs.url(PATH)
    doc = {"client_id": url, "redirect_uris": [REDIRECT_URI]}
    docs.routes[PATH] = Route.json(doc)
    assert authorize_page(client, url).status_code == 302  # to the login page
    app = services.store.get_app(url)
    assert app is not None and app.name == "127.0.0.1"
    assert app.grant_types == ("authorization_code", "refresh_token")


@pytest.mark.parametrize(
    ("fields", "description"),
    [
        pytest.param(
            {"client_id": "https://other.example.com/client.json"},
            "client_id does not match the URL",
            id="client-id-mismatch",
        ),
        pytest.param({"redirect_uris": []}, "At least one redirect_uri", id="no-redirect-uris"),
        pytest.param(
            {"redirect_uris": ["javascript:alert(1)"]}, "scheme is not allowed", id="bad-uri"
        ),
        pytest.param(
            {"token_endpoint_auth_method": "client_secret_basic"},
            "cannot carry a client secret",
            id="client-secret-method",
        ),
        pytest.param(
            {"token_endpoint_auth_method": "private_key_jwt"},
            "exactly one of jwks and jwks_uri",
            id="private-key-jwt-without-keys",
        ),
        pytest.param(
            {"grant_types": ["client_credentials"]},
            "grant_types must include authorization_code",
            id="client-credentials",
        ),
        pytest.param({"client_name": "x" * 65}, "client_name must be 1 to 64", id="long-name"),
        pytest.param({"logo_uri": "http://x.example/l.png"}, "logo_uri must be", id="http-logo"),
    ],
)
def test_invalid_document_is_an_error_page(
    client: TestClient,
    docs: DocumentServer,
    services: Services,
    fields: dict[str, Any],
    description: str,
) -> None:
    url = publish(docs, **fields)
    assert_error_page(authorize_page(client, url), description)
    assert services.store.get_app(url) is None
    assert docs.requests_to(PATH) == 1


@pytest.mark.parametrize(
    ("route", "description"),
    [
        pytest.param(
            Route(b'{"pad": "' + b"x" * 70_000 + b'"}'), "larger than 65536 bytes", id="oversize"
        ),
        pytest.param(Route.json({}, delay=1.5), "did not answer in time", id="slow"),
        pytest.param(
            Route(b"<html></html>", headers={"Content-Type": "text/html"}),
            "not served as application/json",
            id="not-json-content-type",
        ),
        pytest.param(Route(b"{not json"), "not valid JSON", id="not-json-body"),
        pytest.param(Route(b"[1, 2]"), "not a JSON object", id="json-array"),
        pytest.param(Route(b"", 404), "HTTP 404", id="not-found"),
    ],
)
def test_unusable_response_is_an_error_page(
    client: TestClient,
    docs: DocumentServer,
    services: Services,
    route: Route,
    description: str,
) -> None:
    url = docs.url(PATH)
    docs.routes[PATH] = route
    assert_error_page(authorize_page(client, url), description)
    assert services.store.get_app(url) is None


def test_redirect_is_not_followed(
    client: TestClient, docs: DocumentServer, services: Services
) -> None:
    url = docs.url(PATH)
    target = docs.url("/elsewhere.json")
    docs.routes[PATH] = Route(b"", 302, {"Location": target})
    docs.routes["/elsewhere.json"] = Route.json(document(url))
    assert_error_page(authorize_page(client, url), "redirect (302)")
    assert [s.path for s in docs.seen] == [PATH]
    assert services.store.get_app(url) is None


def test_redirect_uri_not_in_the_document(client: TestClient, docs: DocumentServer) -> None:
    url = publish(docs)
    resp = authorize_page(client, url, redirect_uri="https://attacker.example/callback")
    assert_error_page(resp, "does not match any registered")
    # Loopback port variance (RFC 8252 §7.3) still applies; another path does not.
    other = authorize_page(client, url, redirect_uri="http://localhost:9876/other")
    assert_error_page(other, "does not match any registered")
    accepted = authorize_page(client, url, redirect_uri="http://localhost:1234/callback")
    assert accepted.status_code == 302 and accepted.headers["location"].startswith("/login")
    assert docs.requests_to(PATH) == 1


@pytest.mark.parametrize(
    ("path", "description"),
    [
        ("https://127.0.0.1:1/", "must have a path"),
        ("https://127.0.0.1:1/a/../client.json", "dot segments"),
        ("https://127.0.0.1:1/a/%2E%2E/client.json", "dot segments"),
        ("https://127.0.0.1:1/./client.json", "dot segments"),
        ("https://user@127.0.0.1:1/client.json", "user information"),
        ("https://127.0.0.1:1/client.json#x", "fragment"),
        ("https://127.0.0.1:1/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_client_id_url_rules(
    client: TestClient, docs: DocumentServer, path: str, description: str
) -> None:
    resp = client.get("/oauth2/authorize", params={"client_id": path, "response_type": "code"})
    assert_error_page(resp, description)
    assert docs.seen == []


def test_token_endpoint_answers_invalid_client(
    client: TestClient, docs: DocumentServer, services: Services
) -> None:
    url = docs.url(PATH)
    docs.routes[PATH] = Route(b"", 500)
    data = {"grant_type": "authorization_code", "code": "x", "client_id": url}
    body = assert_oauth_error(
        token_request(client, data), 401, "invalid_client", "could not be used"
    )
    assert "HTTP 500" in body["error_description"]
    assert services.store.get_app(url) is None
    revoke = client.post("/oauth2/revoke", data={"token": "x", "client_id": url})
    assert_oauth_error(revoke, 401, "invalid_client", "could not be used")


def test_private_address_refused_without_allow_list(
    settings: Settings, docs: DocumentServer, clock: MovableClock
) -> None:
    """localhost resolves to loopback; with no allow-list authgate never connects."""
    strict = settings.model_copy(update={"fetch_allow_hosts": ""})
    services = build_services(strict, clock=clock)
    try:
        with TestClient(create_app(strict, services=services), base_url=ISSUER) as client:
            for host in ("localhost", "127.0.0.1"):
                url = docs.url(PATH, host)
                docs.routes[PATH] = Route.json(document(url))
                assert_error_page(authorize_page(client, url), "may not be fetched")
                data = {"grant_type": "authorization_code", "code": "x", "client_id": url}
                assert_oauth_error(token_request(client, data), 401, "invalid_client")
                assert services.store.get_app(url) is None
        assert docs.seen == []
    finally:
        services.store.close()


def test_feature_switched_off(
    client: TestClient, settings: Settings, docs: DocumentServer, clock: MovableClock
) -> None:
    url = publish(docs)
    assert authorize_page(client, url).status_code == 302  # stored while the feature was on
    off = settings.model_copy(update={"client_metadata_documents": False})
    services = build_services(off, clock=clock)
    try:
        assert services.ctx.fetcher is None
        assert services.store.get_app(url) is not None
        with TestClient(create_app(off, services=services), base_url=ISSUER) as off_client:
            # The stored copy is not a client any more, and nothing is fetched.
            assert_error_page(authorize_page(off_client, url), "not known to this server")
            data = {"grant_type": "authorization_code", "code": "x", "client_id": url}
            assert_oauth_error(token_request(off_client, data), 401, "invalid_client")
            body = off_client.get("/.well-known/oauth-authorization-server").json()
            assert "client_id_metadata_document_supported" not in body
        assert docs.requests_to(PATH) == 1
    finally:
        services.store.close()


def test_cached_until_max_age_then_refetched(
    client: TestClient, docs: DocumentServer, services: Services, clock: MovableClock
) -> None:
    url = publish(docs, cache_control="public, max-age=600")
    assert authorize_page(client, url).status_code == 302
    clock.advance(seconds=599)
    assert authorize_page(client, url).status_code == 302
    assert docs.requests_to(PATH) == 1
    publish(docs, client_name="Renamed client")
    clock.advance(seconds=2)
    assert authorize_page(client, url).status_code == 302
    assert docs.requests_to(PATH) == 2
    app = services.store.get_app(url)
    assert app is not None and app.name == "Renamed client"
    assert app.metadata_expires_at == clock.now() + timedelta(seconds=600)
    updated, _ = services.store.list_audit(AuditQuery(action="app.updated", target_id=url))
    assert len(updated) == 1 and updated[0].details["name"] == "Renamed client"


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, timedelta(hours=1)),
        ("max-age=10", timedelta(minutes=5)),
        ("no-store", timedelta(minutes=5)),
        ("max-age=999999", timedelta(hours=24)),
    ],
)
def test_cache_lifetime_is_clamped(
    client: TestClient,
    docs: DocumentServer,
    services: Services,
    clock: MovableClock,
    cache_control: str | None,
    ttl: timedelta,
) -> None:
    url = publish(docs, cache_control=cache_control)
    assert authorize_page(client, url).status_code == 302
    app = services.store.get_app(url)
    assert app is not None and app.metadata_expires_at == clock.now() + ttl


def test_failures_are_remembered_for_a_minute(
    client: TestClient, docs: DocumentServer, services: Services, clock: MovableClock
) -> None:
    url = docs.url(PATH)
    docs.routes[PATH] = Route(b"", 503)
    assert_error_page(authorize_page(client, url), "HTTP 503")
    publish(docs)
    clock.advance(seconds=59)
    # Fixed on the client's side, but this node waits out the failure cache: no new request.
    assert_error_page(authorize_page(client, url), "HTTP 503")
    assert docs.requests_to(PATH) == 1
    clock.advance(seconds=2)
    assert authorize_page(client, url).status_code == 302
    assert docs.requests_to(PATH) == 2
    assert services.store.get_app(url) is not None


def test_stale_if_error(
    signed_in: TestClient, docs: DocumentServer, services: Services, clock: MovableClock
) -> None:
    url = publish(docs, cache_control="max-age=300")
    assert consent_page(signed_in, authorize_url(url, challenge=generate_pkce().challenge))
    clock.advance(seconds=301)
    docs.routes[PATH] = Route(b"", 502)
    # The document server is down: the copy that expired a second ago is still used, for the
    # whole flow, and the failure cache keeps authgate from asking again every request.
    pkce = generate_pkce()
    code = authorize(signed_in, url, challenge=pkce.challenge)
    assert_token_response(
        exchange_code(signed_in, code, client_id=url, client_secret=None, verifier=pkce.verifier)
    )
    assert docs.requests_to(PATH) == 2
    # Up to 24 hours after it expired (the session has ended by then: a login redirect means
    # the request was valid); then the failure shows.
    clock.advance(hours=23, minutes=58)
    assert authorize_page(signed_in, url).headers["location"].startswith("/login")
    clock.advance(minutes=3)
    assert_error_page(authorize_page(signed_in, url), "HTTP 502")
    app = services.store.get_app(url)
    assert app is not None and app.name == "Example MCP client"


def test_stale_copy_is_not_used_for_an_invalid_document(
    client: TestClient, docs: DocumentServer, clock: MovableClock
) -> None:
    """A document that was fetched but is now invalid is the client's word: no stale copy."""
    url = publish(docs, cache_control="max-age=300")
    assert authorize_page(client, url).status_code == 302
    clock.advance(seconds=301)
    publish(docs, client_id="https://elsewhere.example/client.json")
    assert_error_page(authorize_page(client, url), "client_id does not match")


def test_metadata_advertises_documents(client: TestClient) -> None:
    body = client.get("/.well-known/oauth-authorization-server").json()
    assert body["client_id_metadata_document_supported"] is True
    policy = Policy(issuer=ISSUER)
    on = metadata.authorization_server(policy, [], client_id_metadata_documents=True)
    assert on["client_id_metadata_document_supported"] is True
    off = metadata.authorization_server(policy, [])
    assert "client_id_metadata_document_supported" not in off
