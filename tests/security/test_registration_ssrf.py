"""Client impersonation through registration, and server-side request forgery through the
documents authgate fetches for clients (Client ID Metadata Documents and ``jwks_uri``).

Sources: RFC 7591 §5 (security considerations: impersonation of a legitimate client, logo and
name copying; software statements, §2.3 / §3.1.1), RFC 7592 §5 (registration access token),
RFC 9700 §4.1 (redirect URIs of dynamically registered clients), RFC 6819 §5.2.3.5, OAuth 2.1
draft §7.x, draft-ietf-oauth-client-id-metadata-document §6 (SSRF: "the authorization server
MUST NOT fetch documents from internal addresses"), RFC 9728 §7.7 and RFC 7523 §3 (``jwks_uri``
fetches), and the SSRF class of bugs in OAuth servers that fetch client-supplied URLs
(e.g. CVE-2021-26715 in MITREid Connect: SSRF through the ``request_uri`` / ``logo_uri``
fetch; CWE-918). Address rules are those of ``fetch/addresses.py`` and
``tests/fetch/test_fetcher.py``; here they are exercised end to end through the endpoints, with
a real HTTPS server on 127.0.0.1 that records every request, to prove no connection was made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, build_services, create_app
from authgate.config import Settings
from authgate.core.client_assertion import ASSERTION_TYPE
from tests.conftest import ISSUER, Account, Client, make_client
from tests.fetch.server import DocumentServer, Route, write_certificates
from tests.fetch.server import DocumentServer as _Server
from tests.flows import (
    REDIRECT_URI,
    assert_oauth_error,
    authorize_url,
    generate_pkce,
    login,
    token_request,
)
from tests.security.helpers import assert_error_page, snapshot
from tests.spec.test_rfc7523 import new_key, sign

PATH = "/client.json"
REGISTER = "/oauth2/register"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentServer]:
    directory = tmp_path_factory.mktemp("tls")
    _, cert, key = write_certificates(directory)
    with _Server(cert, key) as server:
        server.ca = directory / "ca.pem"
        yield server


@pytest.fixture
def settings(tmp_path: Path, database_url: str, docs: DocumentServer) -> Settings:
    """No fetch allow-list: the production rules. The test CA is trusted, so a connection
    that got through would succeed, and show up in ``docs.seen``."""
    docs.seen.clear()
    docs.routes.clear()
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_ca_bundle=str(docs.ca),
        fetch_timeout_seconds=1,
    )


def _document(url: str) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Internal",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
    }


# One row per address class; every host form in it is tried.
SSRF_HOSTS = [
    pytest.param(["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"],
                 id="cimd-6-loopback"),
    pytest.param(["[::ffff:127.0.0.1]:{port}", "[::ffff:7f00:1]:{port}"],
                 id="cimd-6-ipv4-mapped-ipv6"),
    pytest.param(["2130706433:{port}", "0x7f000001:{port}", "0177.0.0.1:{port}",
                  "127.1:{port}"], id="cwe918-decimal-hex-octal-short-ip"),
    pytest.param(["0.0.0.0:{port}"], id="cwe918-unspecified"),
    pytest.param(["169.254.169.254", "[fe80::1]"], id="cwe918-link-local-cloud-metadata"),
    pytest.param(["10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "[fd00::1]"],
                 id="cwe918-private-ranges"),
]  # fmt: skip


@pytest.mark.parametrize("hosts", SSRF_HOSTS)
def test_metadata_document_on_a_private_address_is_never_fetched(
    signed_in: TestClient, services: Services, docs: DocumentServer, hosts: list[str]
) -> None:
    before = snapshot(services)
    for host in hosts:
        url = f"https://{host.format(port=docs.port)}{PATH}"
        docs.routes[PATH] = Route.json(_document(url))
        page = signed_in.get(
            authorize_url(url, challenge=generate_pkce().challenge), follow_redirects=False
        )
        assert_error_page(
            page, 400, "invalid_client", "The client metadata document could not be used"
        )
        token = token_request(
            signed_in, {"grant_type": "client_credentials", "client_id": url, "resource": ISSUER}
        )
        assert_oauth_error(token, 401, "invalid_client")
        assert docs.seen == [], host
    assert snapshot(services) == before


def test_metadata_document_redirect_is_not_followed(
    settings: Settings, services: Services, docs: DocumentServer, alice: Account
) -> None:
    """Even from an allowed host, a redirect (to the cloud metadata service) is refused."""
    allowed = settings.model_copy(update={"fetch_allow_hosts": "127.0.0.1"})
    local = build_services(allowed, clock=services.ctx.clock)
    url = docs.url(PATH)
    docs.routes[PATH] = Route(
        b"", 302, {"Location": "https://169.254.169.254/latest/meta-data/"}, length=True
    )
    with TestClient(create_app(allowed, services=local), base_url=ISSUER) as client:
        login(client, alice.user.username, alice.password)
        page = client.get(
            authorize_url(url, challenge=generate_pkce().challenge), follow_redirects=False
        )
    local.store.close()
    assert_error_page(page, 400, "invalid_client", "redirect (302)")
    assert [s.path for s in docs.seen] == [PATH]
    assert services.store.get_app(url) is None


def test_deeply_nested_documents_are_refused_cleanly(
    settings: Settings, services: Services, docs: DocumentServer, alice: Account
) -> None:
    """CWE-674: a fetched document nested thousands deep (it fits in 64 KiB) is "not valid
    JSON", for a metadata document and for a jwks_uri key set alike, never a 500."""
    nested = b"[" * 5000 + b"]" * 5000
    allowed = settings.model_copy(update={"fetch_allow_hosts": "127.0.0.1"})
    local = build_services(allowed, clock=services.ctx.clock)
    url = docs.url(PATH)
    docs.routes[PATH] = Route(nested)
    docs.routes["/jwks.json"] = Route(nested)
    with TestClient(create_app(allowed, services=local), base_url=ISSUER) as client:
        login(client, alice.user.username, alice.password)
        page = client.get(
            authorize_url(url, challenge=generate_pkce().challenge), follow_redirects=False
        )
        assert_error_page(page, 400, "invalid_client", "not valid JSON")
        registered = client.post(REGISTER, json=_pk_registration(docs.url("/jwks.json")))
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        key = new_key("ES256")
        now = int(services.ctx.clock.now().timestamp())
        claims = {
            "iss": client_id, "sub": client_id, "aud": f"{ISSUER}/oauth2/tokens",
            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60,
        }  # fmt: skip
        token = token_request(
            client,
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": sign(key, claims, "ES256"),
            },
        )
    local.store.close()
    assert_oauth_error(token, 401, "invalid_client")
    assert services.store.get_app(url) is None


def _pk_registration(jwks_uri: str) -> dict[str, Any]:
    return {
        "client_name": "Key client",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": jwks_uri,
    }


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("127.0.0.1:{port}", id="7523-jwks_uri-loopback"),
        pytest.param("169.254.169.254", id="7523-jwks_uri-cloud-metadata"),
    ],
)
def test_jwks_uri_on_a_private_address_is_never_fetched(
    client: TestClient, services: Services, docs: DocumentServer, host: str
) -> None:
    key = new_key("ES256")
    jwks_uri = f"https://{host.format(port=docs.port)}/jwks.json"
    docs.routes["/jwks.json"] = Route.json({"keys": [dict(key.as_dict(private=False))]})
    resp = client.post(REGISTER, json=_pk_registration(jwks_uri))
    assert resp.status_code == 201, resp.text
    client_id = resp.json()["client_id"]
    now = int(services.ctx.clock.now().timestamp())
    claims = {
        "iss": client_id, "sub": client_id, "aud": f"{ISSUER}/oauth2/tokens",
        "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60,
    }  # fmt: skip
    before = snapshot(services)
    token = token_request(
        client,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign(key, claims, "ES256"),
        },
    )
    assert_oauth_error(token, 401, "invalid_client")
    assert docs.seen == []
    assert snapshot(services) == before


def test_jwks_uri_scheme_is_checked_at_registration(
    client: TestClient, services: Services, docs: DocumentServer
) -> None:
    before = snapshot(services)
    for jwks_uri in ("http://example.com/jwks.json", "https://user@example.com/jwks.json",
                     "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"):  # fmt: skip
        resp = client.post(REGISTER, json=_pk_registration(jwks_uri))
        assert_oauth_error(resp, 400, "invalid_client_metadata", "jwks_uri")
    assert snapshot(services) == before
    assert docs.seen == []


# Impersonation (RFC 7591 §5).


def _register(client: TestClient, **fields: Any) -> str:
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **fields}
    resp = client.post(REGISTER, json=body)
    assert resp.status_code == 201, resp.text
    client_id: str = resp.json()["client_id"]
    return client_id


@pytest.mark.parametrize(
    ("names", "flagged"),
    [
        pytest.param(["Acme Console", "ACME CONSOLE", "\uff21cme Console"], True,
                     id="7591-5-same-name-case-nfkc"),
        pytest.param(["Acme\u00a0Console", "Acme  Console", "Acme\u200bConsole", "Acme-Console"],
                     True, id="7591-5-spacing-and-punctuation"),
        pytest.param(["Acme Console 2"], False, id="control-other-name"),
    ],
)  # fmt: skip
def test_self_registered_copy_of_an_operator_app_is_flagged_on_consent(
    client: TestClient, services: Services, alice: Account, names: list[str], flagged: bool
) -> None:
    make_client(services, name="Acme Console", icon="https://acme.example/logo.png")
    login(client, alice.user.username, alice.password)
    for name in names:
        client_id = _register(
            client,
            client_name=name,
            logo_uri="https://acme.example/logo.png",
            client_uri="https://acme.example",
        )
        page = client.get(authorize_url(client_id, challenge=generate_pkce().challenge))
        assert page.status_code == 200
        warning = 'class="identity warning" id="identity" role="alert"'
        assert (warning in page.text) is flagged, name
        if not flagged:
            assert 'class="identity unverified"' in page.text
        # The copied logo is never shown for a client that vouches for itself.
        assert "acme.example/logo.png" not in page.text and "app-icon" not in page.text


def test_software_statement_is_refused(client: TestClient, services: Services) -> None:
    """RFC 7591 §3.2.2: authgate trusts no statement issuer, so a statement cannot lend a
    client an identity; the registration is refused and nothing is stored."""
    before = snapshot(services)
    resp = client.post(
        REGISTER,
        json={
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "software_statement": "eyJhbGciOiJub25lIn0.eyJjbGllbnRfbmFtZSI6IkFjbWUifQ.",
        },
    )
    assert_oauth_error(resp, 400, "unapproved_software_statement")
    assert snapshot(services) == before


def _allow_hosts(client: TestClient, admin: Account, hosts: list[str]) -> None:
    resp = client.put(
        "/api/v2/oauth2-provider/settings",
        headers={"Authorization": f"Bearer {admin.api_token}"},
        json={"registration_redirect_hosts": hosts},
    )
    assert resp.status_code == 200, resp.text


def test_redirect_host_allow_list_is_enforced(
    client: TestClient, services: Services, admin: Account
) -> None:
    _allow_hosts(client, admin, ["app.example.com"])
    before = snapshot(services)
    for uris in (
        ["https://evil.example/cb"],
        ["https://app.example.com.evil.example/cb"],  # suffix
        ["https://evilapp.example.com/cb"],  # prefix
        ["https://sub.app.example.com/cb"],  # subdomain (only "*.app.example.com" allows it)
        ["https://app.example.com/cb", "https://evil.example/cb"],  # the second URI
        ["com.evil.app:/cb"],  # a private-use scheme that is not listed
    ):
        resp = client.post(REGISTER, json={"redirect_uris": uris, "client_name": "x"})
        assert_oauth_error(resp, 400, "invalid_redirect_uri", "not on a host this server accepts")
    assert snapshot(services) == before
    # The control: a listed host registers.
    ok = client.post(REGISTER, json={"redirect_uris": ["https://app.example.com/cb"]})
    assert ok.status_code == 201, ok.text


def test_dangerous_redirect_uris_are_refused_at_registration(
    client: TestClient, services: Services
) -> None:
    """RFC 6819 §5.2.3.5, OAuth 2.1 §2.3.1, RFC 9700 §4.1.1."""
    before = snapshot(services)
    for uri in (
        "javascript:alert(1)//",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "http://evil.example/cb",
        "https://app.example.com/cb#frag",
        "https://user:pw@app.example.com/cb",
    ):
        resp = client.post(REGISTER, json={"redirect_uris": [uri], "client_name": "x"})
        assert_oauth_error(resp, 400, "invalid_redirect_uri")
    assert snapshot(services) == before


def test_registration_access_token_of_another_client_is_refused(
    client: TestClient, services: Services
) -> None:
    """RFC 7592 §5: the registration access token manages one client only; it travels only in
    the Authorization header (a token in the URL is refused)."""
    first = client.post(REGISTER, json={"redirect_uris": [REDIRECT_URI],
                                        "token_endpoint_auth_method": "none"}).json()  # fmt: skip
    second = client.post(REGISTER, json={"redirect_uris": [REDIRECT_URI],
                                         "token_endpoint_auth_method": "none"}).json()  # fmt: skip
    before = snapshot(services)
    path = f"/oauth2/clients/{second['client_id']}"
    auth = {"Authorization": f"Bearer {first['registration_access_token']}"}
    for method in ("GET", "PUT", "DELETE"):
        kwargs: dict[str, Any] = {"headers": auth}
        if method == "PUT":
            kwargs["json"] = {"redirect_uris": ["https://evil.example/cb"]}
        resp = client.request(method, path, **kwargs)
        assert_oauth_error(resp, 401, "invalid_token")
    query = client.get(path + "?access_token=" + second["registration_access_token"])
    assert_oauth_error(query, 400, "invalid_request")
    assert snapshot(services) == before
    app = services.store.get_app(second["client_id"])
    assert app is not None and app.redirect_uris == (REDIRECT_URI,)


def test_operator_app_cannot_be_managed_through_registration(
    client: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 7592: only dynamically registered clients have a registration access token."""
    before = snapshot(services)
    resp = client.delete(
        f"/oauth2/clients/{confidential.id}", headers={"Authorization": "Bearer agrat_x"}
    )
    assert_oauth_error(resp, 401, "invalid_token")
    assert snapshot(services) == before
