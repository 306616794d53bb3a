"""Authorization code injection, replay, PKCE downgrade and brute force, and mix-up.

Sources: RFC 9700 §4.5 (authorization code injection) and §2.1.1 (PKCE: "authorization servers
MUST support PKCE", "MUST ensure that if there was no code_challenge in the authorization
request, a request to the token endpoint containing a code_verifier is rejected" — the PKCE
downgrade attack of §4.8), RFC 9700 §4.4 and RFC 9207 (mix-up: the ``iss`` response
parameter), RFC 6749 §4.1.2 and §10.5 (codes are single use; a replay revokes what the code
issued), RFC 6819 §4.4.1.1 and §5.1.5.3, RFC 7636 §4.1–4.6 (S256, 43–128 unreserved
characters, "plain" refused by OAuth 2.1 draft §4.1.1), RFC 8707 §2.2 (resource at the token
endpoint).

Brute force of the verifier: a wrong verifier does not burn the code (DESIGN.md §7: a failed
token request never consumes it, so a network glitch does not cost the user the sign-in), the
verifier has 256 bits of entropy, the code lives minutes, and every attempt counts against the
per-client token rate limit (429), which is what this catalogue asserts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.config import Settings
from authgate.core.models import AuditQuery
from authgate.crypto import secrets
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client, issued, make_client
from tests.flows import (
    REDIRECT_URI,
    VECTOR_CHALLENGE,
    VECTOR_VERIFIER,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    csrf_from,
    decide,
    exchange_code,
    generate_pkce,
    login,
)
from tests.security.helpers import code_count, snapshot

RATE = 12  # token requests per client per minute in this module (the brute-force test)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        issuer=ISSUER,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        token_rate_per_client=RATE,
    )


def _events(services: Services, action: str) -> int:
    _, total = services.store.list_audit(AuditQuery(action=action, limit=1))
    return total


def _redeem(client: TestClient, app: Client, code: str, verifier: str | None, **kw: Any) -> Any:
    return exchange_code(
        client, code, client_id=app.id, client_secret=app.secret, verifier=verifier, **kw
    )


def test_code_of_another_client_is_refused_and_stays_usable(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 9700 §4.5, RFC 6749 §4.1.3: "ensure that the authorization code was issued to the
    authenticated confidential client"."""
    thief = make_client(services, name="Thief")
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    before = snapshot(services)
    resp = _redeem(signed_in, thief, code, pkce.verifier)
    assert_oauth_error(resp, 400, "invalid_grant", "authorization code is invalid")
    assert snapshot(services) == before
    assert issued(services, thief.id) == issued(services, thief.id).__class__(0, 0, 0, 0, 0)
    assert_token_response(_redeem(signed_in, confidential, code, pkce.verifier))


def test_code_of_a_public_client_injected_by_another_public_client(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    """RFC 9700 §4.5.3: for public clients PKCE and the client binding stop injection."""
    other = make_client(services, name="Other public", client_type="public")
    pkce = generate_pkce()
    code = authorize(signed_in, public.id, challenge=pkce.challenge)
    resp = _redeem(signed_in, other, code, pkce.verifier)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, other.id).access == 0
    assert issued(services, public.id).consumed_codes == 0


def test_code_replay_revokes_the_grant(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6749 §4.1.2: "If an authorization code is used more than once ... SHOULD revoke
    all tokens previously issued based on that authorization code" (RFC 9700 §4.5)."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    first = assert_token_response(_redeem(signed_in, confidential, code, pkce.verifier))
    assert issued(services, confidential.id).live_access == 1
    replay = _redeem(signed_in, confidential, code, pkce.verifier)
    assert_oauth_error(replay, 400, "invalid_grant", "authorization code is invalid")
    after = issued(services, confidential.id)
    assert (after.access, after.live_access, after.grants) == (1, 0, 1)
    assert _events(services, "authorization_code.replayed") == 1
    # The refresh token of the first redemption is dead too.
    resp = signed_in.post(
        "/oauth2/tokens",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(confidential.id, confidential.secret or ""),
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    info = signed_in.post(
        "/oauth2/introspect",
        data={"token": first["access_token"]},
        auth=(confidential.id, confidential.secret or ""),
    )
    assert info.json() == {"active": False}


def test_code_replay_by_another_client_still_revokes(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """A stolen, already used code: whoever replays it, the grant it made is revoked."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    assert_token_response(_redeem(signed_in, confidential, code, pkce.verifier))
    thief = make_client(services, name="Thief")
    assert_oauth_error(_redeem(signed_in, thief, code, pkce.verifier), 400, "invalid_grant")
    assert issued(services, confidential.id).live_access == 0
    assert issued(services, thief.id).access == 0


def test_expired_code_is_refused_and_not_consumed(
    signed_in: TestClient, services: Services, confidential: Client, clock: MovableClock
) -> None:
    """RFC 6749 §4.1.2: short-lived codes (RFC 6819 §5.1.5.3)."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    clock.advance(minutes=11)
    before = snapshot(services)
    resp = _redeem(signed_in, confidential, code, pkce.verifier)
    assert_oauth_error(resp, 400, "invalid_grant", "authorization code is invalid or expired")
    assert snapshot(services) == before


def test_forged_codes_are_refused(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 6819 §5.1.4.2.2: checksum, kind, case, suffix, guess: none finds or burns a code."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    before = snapshot(services)
    for forged in (
        code[:-1] + ("A" if code[-1] != "A" else "B"),  # bad checksum
        code[:-8] + "AAAAAAAA",  # forged tail
        code.replace("agac_", "agrt_"),  # another kind of token
        code.upper(),
        code + "x",
        secrets.generate("ac").value,  # a well-formed guess
    ):
        resp = _redeem(signed_in, confidential, forged, pkce.verifier)
        assert_oauth_error(resp, 400, "invalid_grant", "authorization code is invalid")
    assert snapshot(services) == before
    assert_token_response(_redeem(signed_in, confidential, code, pkce.verifier))


def test_same_prefix_different_secret_is_refused(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """The lookup prefix is not the secret: a well-formed code sharing only the prefix fails
    the constant-time hash comparison (RFC 6819 §5.1.4.2.2)."""
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    head, prefix, _ = code.split("_")
    body = f"{head}_{prefix}_{'Z' * secrets.SECRET_LEN}"
    forged = body + secrets._checksum(body)
    assert secrets.parse(forged, "ac") is not None
    resp = _redeem(signed_in, confidential, forged, pkce.verifier)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, confidential.id).consumed_codes == 0


# PKCE downgrade and misuse (RFC 9700 §2.1.1, §4.8; RFC 7636 §4).


def test_challenge_sent_but_no_verifier(
    signed_in: TestClient, services: Services, public: Client
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, public.id, challenge=pkce.challenge)
    before = snapshot(services)
    resp = _redeem(signed_in, public, code, None)
    assert_oauth_error(resp, 400, "invalid_grant", "PKCE code verifier is invalid")
    assert snapshot(services) == before
    assert_token_response(_redeem(signed_in, public, code, pkce.verifier))


def test_verifier_without_challenge_is_a_downgrade(
    signed_in: TestClient, services: Services
) -> None:
    """RFC 9700 §2.1.1: a code_verifier for a code that had no code_challenge is rejected (the
    attacker stripped the challenge from the victim's authorization request)."""
    legacy = make_client(services, name="Legacy", require_pkce=False)
    code = authorize(signed_in, legacy.id, challenge=None)
    before = snapshot(services)
    resp = _redeem(signed_in, legacy, code, generate_pkce().verifier)
    assert_oauth_error(resp, 400, "invalid_grant", "code has no code_challenge")
    assert snapshot(services) == before
    assert_token_response(_redeem(signed_in, legacy, code, None))


@pytest.mark.parametrize(
    ("override", "description"),
    [
        pytest.param(
            {"code_challenge": None, "code_challenge_method": None},
            "code_challenge is required",
            id="7636-4.4-missing",
        ),
        pytest.param({"code_challenge": None}, "without code_challenge", id="7636-4.3-method-only"),
        pytest.param(
            {"code_challenge_method": "plain"}, "only S256", id="oauth21-4.1.1-plain-refused"
        ),
        pytest.param({"code_challenge_method": "s256"}, "only S256", id="7636-4.3-method-case"),
        pytest.param({"code_challenge": "a" * 42}, "43 to 128", id="7636-4.2-short-challenge"),
        pytest.param({"code_challenge": "a" * 129}, "43 to 128", id="7636-4.2-long-challenge"),
        pytest.param(
            {"code_challenge": "a" * 42 + "="}, "43 to 128", id="7636-4.2-padded-challenge"
        ),
    ],
)
def test_bad_challenge_at_authorize_issues_no_code(
    signed_in: TestClient,
    services: Services,
    public: Client,
    override: dict[str, str | None],
    description: str,
) -> None:
    params: dict[str, str | None] = {
        "code_challenge": generate_pkce().challenge,
        "code_challenge_method": "S256",
    }
    params.update(override)
    extra = {k: v for k, v in params.items() if v is not None}
    url = authorize_url(public.id, challenge=None, extra=extra)
    got = callback_params(signed_in.get(url, follow_redirects=False))
    assert got["error"] == "invalid_request"
    assert description in got["error_description"]
    assert got["iss"] == ISSUER and got["state"] == "xyz-state"
    assert code_count(services) == 0


@pytest.mark.parametrize(
    ("verifier", "status", "error"),
    [
        # A "plain" client sends the challenge it showed on the consent page as its verifier:
        # the value is public by design, so the leak checker must not count it as a secret.
        pytest.param(
            VECTOR_CHALLENGE,
            400,
            "invalid_grant",
            id="7636-4.6-plain-verifier",
            marks=pytest.mark.leaks_presented_off,
        ),
        pytest.param("a" * 42, 400, "invalid_request", id="7636-4.1-short-verifier"),
        pytest.param("a" * 129, 400, "invalid_request", id="7636-4.1-long-verifier"),
        pytest.param("a" * 42 + "!", 400, "invalid_request", id="7636-4.1-bad-characters"),
        pytest.param(
            VECTOR_VERIFIER[:-1] + "\u00e9", 400, "invalid_request", id="7636-4.1-non-ascii"
        ),
        pytest.param(generate_pkce().verifier, 400, "invalid_grant", id="7636-4.6-other-verifier"),
    ],
)
def test_wrong_verifier_is_refused_and_the_code_survives(
    signed_in: TestClient, services: Services, public: Client, verifier: str, status: int,
    error: str,
) -> None:  # fmt: skip
    code = authorize(signed_in, public.id, challenge=VECTOR_CHALLENGE)
    before = snapshot(services)
    assert_oauth_error(_redeem(signed_in, public, code, verifier), status, error)
    assert snapshot(services) == before
    assert_token_response(_redeem(signed_in, public, code, VECTOR_VERIFIER))


def test_verifier_brute_force_is_rate_limited(
    signed_in: TestClient, services: Services, public: Client, clock: MovableClock
) -> None:
    """RFC 6819 §5.1.4.2.3 (limit attempts): wrong verifiers leave the code unconsumed, but
    the per-client token rate limit stops guessing at RATE a minute with 429."""
    pkce = generate_pkce()
    code = authorize(signed_in, public.id, challenge=pkce.challenge)
    for _ in range(RATE):
        resp = _redeem(signed_in, public, code, generate_pkce().verifier)
        assert_oauth_error(resp, 400, "invalid_grant")
    limited = _redeem(signed_in, public, code, pkce.verifier)  # even the right one now
    body = assert_oauth_error(limited, 429, "temporarily_unavailable")
    assert int(limited.headers["retry-after"]) > 0 and "access_token" not in body
    assert issued(services, public.id).access == 0
    assert issued(services, public.id).consumed_codes == 0
    clock.advance(seconds=61)
    assert_token_response(_redeem(signed_in, public, code, pkce.verifier))


def test_resource_swap_at_the_token_endpoint(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    """RFC 8707 §2.2 / RFC 9700 §4.10: the audience is the one consented, not a new one."""
    pkce = generate_pkce()
    code = authorize(
        signed_in, confidential.id, challenge=pkce.challenge, resource="https://api.example.com"
    )
    before = snapshot(services)
    resp = _redeem(
        signed_in, confidential, code, pkce.verifier, resource="https://other.example.com"
    )
    assert_oauth_error(resp, 400, "invalid_target")
    assert snapshot(services) == before


# Mix-up (RFC 9700 §4.4, RFC 9207).


def test_iss_in_every_authorization_response(signed_in: TestClient, confidential: Client) -> None:
    """RFC 9207 §2: ``iss`` in success and error responses, equal to the metadata issuer."""
    metadata = signed_in.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == ISSUER
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    ok = callback_params(
        decide(signed_in, authorize_url(confidential.id, challenge=generate_pkce().challenge))
    )
    assert ok["iss"] == ISSUER and "code" in ok
    denied = callback_params(
        decide(
            signed_in, authorize_url(confidential.id, challenge=generate_pkce().challenge), "deny"
        )
    )
    assert denied["iss"] == ISSUER and denied["error"] == "access_denied"
    bad = callback_params(
        signed_in.get(
            # A malformed scope (an unknown one is left out since issue 17, not refused).
            authorize_url(confidential.id, challenge=generate_pkce().challenge, scope='no"pe'),
            follow_redirects=False,
        )
    )
    assert bad["iss"] == ISSUER and bad["error"] == "invalid_scope"


def test_issuer_is_not_taken_from_the_host_header(
    client: TestClient, confidential: Client, alice: Any
) -> None:
    """RFC 9207 §2.4 / RFC 8414 §3.3: the issuer is configuration, so a request that names
    another host cannot make authgate claim to be that issuer."""
    headers = {"Host": "evil.example"}
    metadata = client.get("/.well-known/oauth-authorization-server", headers=headers).json()
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == ISSUER + "/oauth2/tokens"
    # RFC 9728 §3.3 / §7.3: the protected resource names this issuer, whatever the Host says.
    prm = client.get("/.well-known/oauth-protected-resource", headers=headers).json()
    assert prm["resource"] == ISSUER and prm["authorization_servers"] == [ISSUER]
    login(client, alice.user.username, alice.password)
    url = authorize_url(confidential.id, challenge=generate_pkce().challenge)
    page = client.get(url, headers=headers)
    assert page.status_code == 200
    resp = client.post(
        url,
        data={"csrf_token": csrf_from(page), "decision": "allow"},
        headers=headers,
        follow_redirects=False,
    )
    got = callback_params(resp)
    assert got["iss"] == ISSUER
    assert resp.headers["location"].startswith(REDIRECT_URI + "?")
