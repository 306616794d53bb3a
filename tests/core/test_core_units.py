"""Fast unit tests of the protocol core: pure functions, and whole flows on the in-memory fake."""

from __future__ import annotations

import threading
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from authgate.core import (
    accounts,
    authorize,
    clients,
    redirect_uris,
    resources,
    scopes,
    token_endpoint,
)
from authgate.core.accounts import create_user
from authgate.core.context import SYSTEM, Context
from authgate.core.errors import (
    InvalidGrantError,
    InvalidRedirectUriError,
    InvalidScopeError,
    ValidationFailed,
)
from authgate.core.params import Params
from authgate.core.policy import Policy
from authgate.crypto import secrets
from authgate.crypto.pkce import s256
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

ISSUER = "https://auth.example.com"
REDIRECT = "http://127.0.0.1:9876/callback"


@pytest.fixture
def ctx() -> Context:
    policy = Policy(issuer=ISSUER, default_audience=ISSUER)
    context = Context(InMemoryStore(), MovableClock(), policy, b"k" * 32)
    resources.ensure_own_api(context)
    return context


class TestSecrets:
    def test_roundtrip(self) -> None:
        value = secrets.generate("cs")
        assert value.value.startswith("agcs_") and len(value.value.split("_")) == 3
        parsed = secrets.parse(value.value, "cs")
        assert parsed is not None and parsed.prefix == value.prefix
        assert parsed.hash == secrets.sha256_hex(value.value)
        assert value.last6 == value.value[-6:]

    @pytest.mark.parametrize("kind", ["rt", "at", "ac"])
    def test_kind_is_checked(self, kind: str) -> None:
        assert secrets.parse(secrets.generate("cs").value, kind) is None

    def test_checksum_catches_a_typo(self) -> None:
        value = secrets.generate("rt").value
        typo = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
        assert secrets.parse(typo, "rt") is None

    def test_unique(self) -> None:
        assert len({secrets.generate("at").value for _ in range(200)}) == 200


class TestRedirectUriRegistration:
    @pytest.mark.parametrize(
        "uri",
        [
            "https://app.example.com/cb",
            "http://localhost:3000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "com.example.app:/oauth2redirect",
        ],
    )
    def test_accepted(self, uri: str) -> None:
        assert redirect_uris.validate_redirect_uri(uri, public=True) == uri

    @pytest.mark.parametrize(
        "uri",
        [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "vbscript:msgbox",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "not-a-url",
            "https:///nohost",
            "https://user:pw@app.example.com/cb",
            "https://app.example.com/c b",
            "mailto:a@example.com",
            "",
            "https://app.example.com/" + "a" * 2048,
        ],
    )
    def test_refused(self, uri: str) -> None:
        with pytest.raises(InvalidRedirectUriError):
            redirect_uris.validate_redirect_uri(uri, public=True)

    def test_matching_is_exact_except_loopback_port(self) -> None:
        assert redirect_uris.matches("http://localhost:1/cb", "http://localhost:2/cb")
        assert redirect_uris.matches("http://localhost/cb", "http://localhost:2/cb")
        assert not redirect_uris.matches("http://localhost:1/cb", "http://127.0.0.1:1/cb")
        assert not redirect_uris.matches("https://localhost:1/cb", "https://localhost:2/cb")
        assert not redirect_uris.matches("http://localhost:1/cb", "http://localhost:1/cb/")
        assert not redirect_uris.matches("https://a.example/cb", "https://A.example/cb")


class TestScopes:
    def test_negotiate(self) -> None:
        known = ("a", "b", "c")
        assert scopes.negotiate(None, None, known) == ""
        assert scopes.negotiate("a b", None, known) == "a b"
        assert scopes.negotiate(None, ("a", "b"), known) == "a b"
        assert scopes.negotiate(None, ("a", "b", "z"), known) == "a b"
        assert scopes.negotiate("b", ("a", "b"), known) == "b"
        assert scopes.negotiate("a a", None, known) == "a"
        with pytest.raises(InvalidScopeError, match="app may not"):
            scopes.negotiate("c", ("a", "b"), known)
        with pytest.raises(InvalidScopeError, match="app may not"):
            scopes.negotiate("c offline_access openid", ("a", "b"), known)
        # Issue 17: names the resource does not define are left out, not refused.
        assert scopes.negotiate("z", None, known) == ""
        assert scopes.negotiate("a offline_access openid profile", None, known) == "a"
        assert scopes.negotiate("c z", ("a", "b"), known) == ""
        with pytest.raises(InvalidScopeError):
            scopes.parse_scope('a "b"')
        # Issue 17: spaces around and between the names are tolerated.
        assert scopes.parse_scope("  a  b ") == ("a", "b")
        with pytest.raises(InvalidScopeError):
            scopes.parse_scope("a\tb")

    def test_allow_list(self) -> None:
        assert scopes.allow_list(None, ("a",)) is None
        assert scopes.allow_list("claudeai", ("a", "b")) is None
        assert scopes.allow_list("a claudeai", ("a", "b")) == ("a", "claudeai")

    def test_narrow(self) -> None:
        assert scopes.narrow(None, "a b") == "a b"
        assert scopes.narrow("a", "a b") == "a"
        with pytest.raises(InvalidScopeError):
            scopes.narrow("c", "a b", ("a", "b", "c"))
        # Issue 17: a name the resource does not define could never be granted: left out.
        assert scopes.narrow("a offline_access", "a b", ("a", "b", "c")) == "a"
        assert scopes.narrow("offline_access", "a b", ("a", "b")) == "a b"


def test_params_repetition_is_lazy() -> None:
    params = Params.from_pairs([("a", "1"), ("a", "2"), ("b", "")])
    assert params.get("b") is None
    with pytest.raises(Exception, match="repeated"):
        params.get("a")


def test_public_app_rules(ctx: Context) -> None:
    with pytest.raises(ValidationFailed):
        clients.create_app(
            ctx,
            SYSTEM,
            clients.AppFields(
                name="x", redirect_uris=[REDIRECT], client_type="public", require_pkce=False
            ),
        )
    app = clients.create_app(
        ctx, SYSTEM, clients.AppFields(name="x", redirect_uris=[REDIRECT], client_type="public")
    )
    assert app.token_endpoint_auth_method == "none" and app.require_pkce
    with pytest.raises(ValidationFailed):
        clients.create_secret(ctx, SYSTEM, app.id)
    with pytest.raises(ValidationFailed):
        clients.update_app(ctx, SYSTEM, app.id, clients.AppFields(client_type="confidential"))


def _code(ctx: Context, app_id: str, verifier: str) -> str:
    user = ctx.store.get_user_by_username("u") or create_user(
        ctx, SYSTEM, username="u", password="password123"
    )
    params = Params.from_pairs(
        [
            ("client_id", app_id),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", s256(verifier)),
            ("state", "s"),
        ]
    )
    request = authorize.validate(ctx, params)
    session, _ = accounts.start_session(ctx, SYSTEM, user)
    url = authorize.issue_code(ctx, request, session)
    query = parse_qs(urlsplit(url).query)
    assert query["iss"] == [ISSUER] and query["state"] == ["s"]
    return query["code"][0]


def test_concurrent_redemptions_mint_one_token(ctx: Context) -> None:
    app = clients.create_app(
        ctx, SYSTEM, clients.AppFields(name="x", redirect_uris=[REDIRECT], client_type="public")
    )
    verifier = "v" * 50
    code = _code(ctx, app.id, verifier)
    params = Params.from_pairs(
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", app.id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ]
    )
    results: list[str] = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        try:
            token_endpoint.exchange(ctx, params, None, SYSTEM)
            results.append("ok")
        except InvalidGrantError:
            results.append("invalid_grant")

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["invalid_grant"] * 7 + ["ok"]


def test_expiry_uses_the_injected_clock(ctx: Context) -> None:
    app = clients.create_app(
        ctx, SYSTEM, clients.AppFields(name="x", redirect_uris=[REDIRECT], client_type="public")
    )
    code = _code(ctx, app.id, "w" * 43)
    assert isinstance(ctx.clock, MovableClock)
    ctx.clock.advance(seconds=601)
    params = Params.from_pairs(
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", app.id),
            ("code_verifier", "w" * 43),
        ]
    )
    with pytest.raises(InvalidGrantError):
        token_endpoint.exchange(ctx, params, None, SYSTEM)
    assert isinstance(ctx.clock.now(), datetime)


def test_password_hashing_runs_at_most_two_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Argon2id hash holds its memory cost while it runs: the process caps how many run."""
    from authgate.crypto import passwords

    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()

    class SlowHasher:
        def hash(self, password: str) -> str:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            release.wait(timeout=5)
            with lock:
                running -= 1
            return "$argon2id$slow"

    monkeypatch.setattr(passwords, "_HASHER", SlowHasher())
    # Two, as configured (the default depends on the machine's cores: default_concurrency).
    monkeypatch.setattr(passwords, "_GATE", passwords._Gate(2, passwords.DEFAULT_QUEUE))
    threads = [threading.Thread(target=passwords.hash_password, args=("pw",)) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = threading.Event()
    for _ in range(50):  # up to 0.5 s for the first two to start
        if running == 2:
            break
        deadline.wait(0.01)
    assert running == 2
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert peak == 2
