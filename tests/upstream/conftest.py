"""Fixtures of the upstream sign-in tests: the tests' throwaway CA, two real OpenID Providers
(node-oidc-provider, two issuers), the Python stand-in for malicious answers, and authgate
set to trust that CA and fetch from 127.0.0.1 (as the client-document tests do)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from authgate.config import Settings
from authgate.core.context import SYSTEM
from authgate.core.upstream import providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.services import Services
from tests.conftest import ISSUER
from tests.fetch.server import write_certificates
from tests.upstream import provider, standin

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PROVIDER_IDS = ("corp", "partner", "standin")


def callback_url(provider_id: str) -> str:
    return f"{ISSUER}/login/upstream/{provider_id}/callback"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return write_certificates(tmp_path_factory.mktemp("upstream-tls"))


@pytest.fixture(scope="session")
def op(tls: tuple[Path, Path, Path]) -> Iterator[provider.OpenIdProvider]:
    """The organisation's provider."""
    ca, cert, key = tls
    with provider.running(ca, cert, key, [callback_url(p) for p in PROVIDER_IDS]) as running:
        yield running


@pytest.fixture(scope="session")
def op2(tls: tuple[Path, Path, Path]) -> Iterator[provider.OpenIdProvider]:
    """A second provider (another issuer), to show several at once."""
    ca, cert, key = tls
    with provider.running(ca, cert, key, [callback_url(p) for p in PROVIDER_IDS]) as running:
        yield running


@pytest.fixture
def stand_in(tls: tuple[Path, Path, Path]) -> Iterator[standin.StandIn]:
    _, cert, key = tls
    with standin.running(cert, key) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, database_url: str, tls: tuple[Path, Path, Path]) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        fetch_allow_hosts="127.0.0.1",
        fetch_ca_bundle=str(tls[0]),
        fetch_timeout_seconds=3,
    )


def add_provider(services: Services, provider_id: str, issuer: str, **rules: Any) -> None:
    spec = ProviderSpec(
        id=provider_id,
        display_name=rules.pop("display_name", provider_id.title()),
        issuer=issuer,
        client_id=provider.CLIENT_ID,
        client_secret=rules.pop("client_secret", provider.CLIENT_SECRET),
        scopes=rules.pop("scopes", "openid email profile groups"),
        **rules,
    )
    providers.create_provider(services.ctx, SYSTEM, spec)


def start(client: TestClient, provider_id: str, return_to: str = "/") -> str:
    """Press the provider's button on the sign-in page; the provider's authorization URL."""
    page = client.get("/login", params={"return_to": return_to})
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match is not None
    resp = client.post(
        f"/login/upstream/{provider_id}",
        data={"csrf_token": match.group(1), "return_to": return_to},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def finish(client: TestClient, url: str) -> Any:
    """The browser arriving back at authgate's callback."""
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def sign_in(
    client: TestClient,
    op: provider.OpenIdProvider,
    provider_id: str,
    account: str,
    return_to: str = "/",
) -> Any:
    url = start(client, provider_id, return_to)
    back = op.drive(url, account, callback_url(provider_id))
    return finish(client, back)
