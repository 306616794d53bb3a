"""RFC 7636 (PKCE) conformance, hardened to OAuth 2.1: S256 only, verifier shape checked,
downgrade refused. Every error asserts the JSON body, the headers and that nothing was issued."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.pkce import s256
from authgate.crypto.pkce import verify_s256
from tests.conftest import Client, issued, make_client
from tests.flows import (
    VECTOR_CHALLENGE,
    VECTOR_VERIFIER,
    assert_oauth_error,
    assert_token_response,
    authorize,
    authorize_url,
    callback_params,
    decide,
    exchange_code,
    generate_pkce,
)


def test_appendix_b_vector() -> None:
    assert s256(VECTOR_VERIFIER) == VECTOR_CHALLENGE
    assert verify_s256(VECTOR_VERIFIER, VECTOR_CHALLENGE)


@pytest.mark.parametrize(
    ("verifier", "challenge"),
    [
        pytest.param(VECTOR_VERIFIER, "wrong_challenge", id="4.6-wrong-challenge"),
        pytest.param(VECTOR_VERIFIER, "", id="4.6-empty-challenge"),
        pytest.param("", VECTOR_CHALLENGE, id="4.6-empty-verifier"),
        pytest.param("", "", id="4.6-both-empty"),
    ],
)
def test_verify_rejects(verifier: str, challenge: str) -> None:
    assert not verify_s256(verifier, challenge)


def test_vector_through_the_whole_flow(signed_in: TestClient, confidential: Client) -> None:
    code = authorize(signed_in, confidential.id, challenge=VECTOR_CHALLENGE)
    resp = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=VECTOR_VERIFIER,
    )
    assert_token_response(resp)


BAD_VERIFIERS = [
    pytest.param("wrong-verifier-" + "a" * 40, 400, "invalid_grant", id="4.6-wrong"),
    pytest.param(None, 400, "invalid_grant", id="4.5-missing"),
    pytest.param("a" * 42, 400, "invalid_request", id="4.1-too-short"),
    pytest.param("a" * 129, 400, "invalid_request", id="4.1-too-long"),
    pytest.param("a" * 42 + "!", 400, "invalid_request", id="4.1-bad-character"),
    pytest.param("a" * 42 + " ", 400, "invalid_request", id="4.1-space"),
    pytest.param("é" * 43, 400, "invalid_request", id="4.1-non-ascii"),
]


@pytest.mark.parametrize(("verifier", "status", "error"), BAD_VERIFIERS)
def test_bad_verifier_issues_nothing_and_keeps_the_code(
    signed_in: TestClient,
    services: Services,
    confidential: Client,
    verifier: str | None,
    status: int,
    error: str,
) -> None:
    pkce = generate_pkce()
    code = authorize(signed_in, confidential.id, challenge=pkce.challenge)
    resp = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=verifier,
    )
    assert_oauth_error(resp, status, error)
    state = issued(services, confidential.id)
    assert (state.access, state.refresh, state.grants, state.consumed_codes) == (0, 0, 0, 0)
    # A failed request never consumes the code: the right verifier still works.
    ok = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=pkce.verifier,
    )
    assert_token_response(ok)


def test_plain_method_is_refused_at_authorize(signed_in: TestClient, confidential: Client) -> None:
    url = authorize_url(
        confidential.id,
        challenge=None,
        extra={"code_challenge": VECTOR_VERIFIER, "code_challenge_method": "plain"},
    )
    params = callback_params(signed_in.get(url, follow_redirects=False))
    assert params["error"] == "invalid_request"
    assert "S256" in params["error_description"]
    assert params["state"] == "xyz-state"
    assert params["iss"] == "http://testserver"


def test_challenge_without_method_is_s256(signed_in: TestClient, confidential: Client) -> None:
    pkce = generate_pkce()
    url = authorize_url(confidential.id, extra={"code_challenge": pkce.challenge})
    code = callback_params(decide(signed_in, url))["code"]
    resp = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=pkce.verifier,
    )
    assert_token_response(resp)


def test_client_that_meant_plain_fails_safely(
    signed_in: TestClient, services: Services, confidential: Client
) -> None:
    # Challenge sent without a method is treated as S256; using it as a plain verifier fails.
    verifier = generate_pkce().verifier
    url = authorize_url(confidential.id, extra={"code_challenge": verifier})
    code = callback_params(decide(signed_in, url))["code"]
    resp = exchange_code(
        signed_in,
        code,
        client_id=confidential.id,
        client_secret=confidential.secret,
        verifier=verifier,
    )
    assert_oauth_error(resp, 400, "invalid_grant")
    assert issued(services, confidential.id).access == 0


@pytest.mark.parametrize(
    "challenge",
    [
        pytest.param("a" * 42, id="4.2-too-short"),
        pytest.param("a" * 129, id="4.2-too-long"),
        pytest.param("a" * 42 + "+", id="4.2-bad-character"),
    ],
)
def test_malformed_challenge_is_redirected_error(
    signed_in: TestClient, confidential: Client, challenge: str
) -> None:
    url = authorize_url(confidential.id, extra={"code_challenge": challenge})
    params = callback_params(signed_in.get(url, follow_redirects=False))
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_pkce_required_by_default(signed_in: TestClient, confidential: Client) -> None:
    params = callback_params(signed_in.get(authorize_url(confidential.id), follow_redirects=False))
    assert params["error"] == "invalid_request"
    assert "code_challenge" in params["error_description"]


def test_public_client_always_needs_pkce(signed_in: TestClient, public: Client) -> None:
    params = callback_params(signed_in.get(authorize_url(public.id), follow_redirects=False))
    assert params["error"] == "invalid_request"


def test_legacy_confidential_client_may_skip_pkce(
    signed_in: TestClient, services: Services
) -> None:
    legacy = make_client(services, require_pkce=False)
    code = authorize(signed_in, legacy.id)
    resp = exchange_code(
        signed_in, code, client_id=legacy.id, client_secret=legacy.secret, verifier=None
    )
    assert_token_response(resp)


def test_verifier_without_challenge_is_a_downgrade(
    signed_in: TestClient, services: Services
) -> None:
    legacy = make_client(services, require_pkce=False)
    code = authorize(signed_in, legacy.id)
    resp = exchange_code(
        signed_in,
        code,
        client_id=legacy.id,
        client_secret=legacy.secret,
        verifier=generate_pkce().verifier,
    )
    assert_oauth_error(resp, 400, "invalid_grant", "code_challenge")
    state = issued(services, legacy.id)
    assert (state.access, state.consumed_codes) == (0, 0)
    # The code was not consumed by the failed attempt.
    ok = exchange_code(
        signed_in, code, client_id=legacy.id, client_secret=legacy.secret, verifier=None
    )
    assert_token_response(ok)
