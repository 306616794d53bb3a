"""Secret comparisons are constant-time.

Sources: RFC 6819 §5.1.4.2.2 and §5.2.3.x (secrets), RFC 9700 §4.x, RFC 7636 §7.2 (verifier
comparison), OWASP and CWE-208 (observable timing discrepancy: e.g. CVE-2021-32618-style
token comparisons with ``==``). Timing itself is never measured here (no timed assertions):
the tests prove the code path. Every comparison of a presented secret (client secret, PKCE
verifier, consent and sign-in CSRF tokens, registration access token, authorization code,
refresh token, personal API token) goes through ``hmac.compare_digest`` — via
``crypto.secrets.constant_time_equal`` or ``crypto.pkce.verify_s256`` — with the stored value on
one side; and no module compares a stored hash or secret with ``==``.
"""

from __future__ import annotations

import ast
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import authgate
from authgate.app import Services
from authgate.core import consent
from authgate.crypto import pkce, secrets
from tests.conftest import Account, Client
from tests.flows import (
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    csrf_from,
    exchange_code,
    generate_pkce,
    refresh,
)

Calls = list[tuple[bytes, bytes]]


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Every ``hmac.compare_digest`` call made by authgate, as (a, b) bytes."""
    calls: Calls = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((_as_bytes(a), _as_bytes(b)))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    yield calls


def _pair(calls: Calls, stored: str, presented: str) -> bool:
    """Whether ``stored`` was compared with ``presented`` (in either order)."""
    a, b = stored.encode(), presented.encode()
    return (a, b) in calls or (b, a) in calls


def _same_prefix(value: str) -> str:
    """A well-formed secret with the prefix of ``value`` and another secret part."""
    head, prefix, rest = value.split("_")
    other = "Z" * secrets.SECRET_LEN if not rest.startswith("Z") else "Y" * secrets.SECRET_LEN
    body = f"{head}_{prefix}_{other}"
    return body + secrets._checksum(body)


def test_client_secret_is_compared_in_constant_time(
    client: TestClient, services: Services, confidential: Client, compared: Calls
) -> None:
    """RFC 6749 §2.3.1 / RFC 6819 §5.1.4.2.2 (core/client_auth.py ``_check_secret``)."""
    assert confidential.secret is not None
    stored = services.store.get_secret_by_prefix(confidential.secret.split("_")[1])
    assert stored is not None
    forged = _same_prefix(confidential.secret)
    resp = client.post("/oauth2/introspect", data={"token": "x"}, auth=(confidential.id, forged))
    assert_oauth_error(resp, 401, "invalid_client")
    assert _pair(compared, stored.secret_hash, secrets.sha256_hex(forged))
    compared.clear()
    ok = client.post(
        "/oauth2/introspect", data={"token": "x"}, auth=(confidential.id, confidential.secret)
    )
    assert ok.status_code == 200
    assert _pair(compared, stored.secret_hash, secrets.sha256_hex(confidential.secret))


def test_pkce_verifier_is_compared_in_constant_time(
    signed_in: TestClient, public: Client, compared: Calls
) -> None:
    """RFC 7636 §4.6 (crypto/pkce.py ``verify_s256``)."""
    p = generate_pkce()
    code = authorize(signed_in, public.id, challenge=p.challenge)
    wrong = generate_pkce().verifier
    resp = exchange_code(signed_in, code, client_id=public.id, client_secret=None, verifier=wrong)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert _pair(compared, p.challenge, pkce.s256(wrong))
    compared.clear()
    resp = exchange_code(
        signed_in, code, client_id=public.id, client_secret=None, verifier=p.verifier
    )
    assert_token_response(resp)
    assert _pair(compared, p.challenge, pkce.s256(p.verifier))


def test_authorization_code_and_refresh_token_hashes(
    signed_in: TestClient, services: Services, confidential: Client, compared: Calls
) -> None:
    """RFC 6819 §5.1.4.2.2: codes and refresh tokens are found by prefix, proven by hash."""
    p = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=p.challenge)
    forged = _same_prefix(code)
    resp = exchange_code(
        signed_in, forged, client_id=confidential.id, client_secret=confidential.secret,
        verifier=p.verifier,
    )  # fmt: skip
    assert_oauth_error(resp, 400, "invalid_grant")
    stored = services.store.get_code_by_prefix(code.split("_")[1])
    assert stored is not None
    assert _pair(compared, stored.code_hash, secrets.sha256_hex(forged))
    body = assert_token_response(
        exchange_code(
            signed_in, code, client_id=confidential.id, client_secret=confidential.secret,
            verifier=p.verifier,
        )
    )  # fmt: skip
    compared.clear()
    forged_refresh = _same_prefix(body["refresh_token"])
    resp = refresh(
        signed_in, forged_refresh, client_id=confidential.id, client_secret=confidential.secret
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    row = services.store.get_refresh_token_by_prefix(body["refresh_token"].split("_")[1])
    assert row is not None
    assert _pair(compared, row.token_hash, secrets.sha256_hex(forged_refresh))


def test_consent_csrf_token_is_compared_in_constant_time(
    signed_in: TestClient, services: Services, confidential: Client, compared: Calls
) -> None:
    """RFC 6819 §4.4.1.8 (core/consent.py ``check_csrf``)."""
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    expected = csrf_from(signed_in.get(url))
    forged = "f" * len(expected)
    resp = signed_in.post(
        url, data={"decision": "allow", "csrf_token": forged}, follow_redirects=False
    )
    assert resp.status_code == 403
    assert _pair(compared, expected, forged)
    session = services.store.get_session_by_hash(
        secrets.sha256_hex(signed_in.cookies["authgate_session"])
    )
    assert session is not None and consent.csrf_token(services.ctx, session.id) == expected


def test_sign_in_csrf_token_is_compared_in_constant_time(
    client: TestClient, alice: Account, compared: Calls
) -> None:
    page = client.get("/login")
    cookie = client.cookies["authgate_login_csrf"]
    forged = "g" * len(cookie)
    resp = client.post(
        "/login",
        data={"username": "alice", "password": alice.password, "csrf_token": forged},
        follow_redirects=False,
    )
    assert resp.status_code == 403
    assert _pair(compared, cookie, forged)
    assert csrf_from(page) == cookie


def test_registration_access_token_is_compared_in_constant_time(
    client: TestClient, services: Services, compared: Calls
) -> None:
    """RFC 7592 §3 (core/client_configuration.py ``authenticate``)."""
    body = client.post(
        "/oauth2/register",
        json={"redirect_uris": ["http://localhost:9876/callback"],
              "token_endpoint_auth_method": "none"},
    ).json()  # fmt: skip
    forged = _same_prefix(body["registration_access_token"])
    resp = client.get(
        f"/oauth2/clients/{body['client_id']}", headers={"Authorization": f"Bearer {forged}"}
    )
    assert_oauth_error(resp, 401, "invalid_token")
    app = services.store.get_app(body["client_id"])
    assert app is not None and app.registration_token_hash is not None
    assert _pair(compared, app.registration_token_hash, secrets.sha256_hex(forged))


def test_api_token_is_compared_in_constant_time(
    client: TestClient, services: Services, alice: Account, compared: Calls
) -> None:
    forged = _same_prefix(alice.api_token)
    resp = client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401
    assert any(secrets.sha256_hex(forged).encode() in pair for pair in compared)


def test_constant_time_equal_is_hmac_compare_digest(compared: Calls) -> None:
    assert secrets.constant_time_equal("abc", "abd") is False
    assert secrets.constant_time_equal("é", "é") is True  # non-ASCII works (bytes compare)
    assert compared == [(b"abc", b"abd"), ("é".encode(), "é".encode())]


_SECRET_WORDS = ("hash", "secret", "verifier", "csrf", "password", "token_value", "mac")


def _secretish(node: ast.expr) -> str | None:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    if not isinstance(name, str) or name.endswith("_id"):  # identifiers are not secrets
        return None
    return name if any(w in name.lower() for w in _SECRET_WORDS) else None


def _sql_column(node: ast.expr) -> bool:
    """``table.c.column == value`` builds a WHERE clause: an index lookup by the SHA-256 of a
    high-entropy token (the session cookie), which an attacker cannot steer byte by byte."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


def test_no_secret_is_compared_with_equality_operators() -> None:
    """A static guard: no ``==`` / ``!=`` with a hash, secret, verifier, CSRF token or MAC on
    either side, anywhere in src/authgate (comparisons with None or a constant are fine)."""
    root = Path(authgate.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Constant) or _sql_column(side) for side in sides):
                continue
            names = [n for n in map(_secretish, sides) if n]
            if names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {names}")
    assert found == []
