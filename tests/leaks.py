"""Secrets never leak: a pytest plugin that watches every test using the app (DESIGN.md §4).

For each test that uses the ``client`` or ``services`` fixture it records, from setup on:

- every secret authgate issues (``crypto.secrets.generate``: client secrets, codes, refresh and
  opaque access tokens, registration and API tokens, sessions, initial access tokens; JWT access
  tokens from ``crypto.jose.sign``; passwords the admin pages generate), with the request that
  was in flight when it was made;
- every credential a request presents (passwords, client secrets, codes, tokens, verifiers,
  assertions, ``Authorization`` headers), in the body or, wrongly, in the query string;
- every request and response through any Starlette ``TestClient``, and every log record of the
  ``authgate`` loggers, formatted as production formats it (``logs.JsonFormatter``).

When the test body has passed, it reads the audit table and fails the test if any of those
secrets appears in a log line, an audit entry, an error response, or any response other than
the one that issued it. The failure names the kind of secret and where it was seen, never the
secret itself. The documented exceptions are listed in ``EXEMPT``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl

import httpx
import httpx2
import pytest
from starlette import testclient

from authgate.core.flows import FlowQuery
from authgate.core.models import AuditQuery
from authgate.core.ports import StoreUnavailableError
from authgate.crypto import jose
from authgate.crypto import secrets as prefixed
from authgate.logs import JsonFormatter

# One generation throughout an exchange: the test client's httpx2, or httpx for a live server.
HttpRequest = TypeVar("HttpRequest", httpx.Request, httpx2.Request)
HttpResponse = TypeVar("HttpResponse", httpx.Response, httpx2.Response)

KINDS = {
    "cs": "client secret",
    "ac": "authorization code",
    "rt": "refresh token",
    "at": "opaque access token",
    "rat": "registration access token",
    "pat": "API token",
    "ses": "session token",
    "iat": "initial access token",
}
#: Request fields that carry a credential, wherever they are sent (form, JSON or query string).
PRESENTED = {
    "password": "password",
    "new_password": "password",
    "client_secret": "client secret",
    "code": "authorization code",
    "refresh_token": "refresh token",
    "token": "token",
    "code_verifier": "PKCE verifier",
    "client_assertion": "client assertion",
    "registration_access_token": "registration access token",
}
#: Shorter presented values are too common to search for (``x``, ``wrong``); real ones are longer.
MIN_PRESENTED = {"password": 8}
MIN_OTHER = 16
#: The fixtures' password (tests/conftest.py); known to every test that signs in.
FIXTURE_PASSWORDS = ("correct horse battery staple",)
#: (method, path prefix, kind): responses that may repeat a secret issued earlier.
#: RFC 7592 §2.1/§2.2: the client read and update responses carry the client's registration
#: (its registration access token and, when it has one, its secret).
EXEMPT: tuple[tuple[str, str, str], ...] = (
    ("GET", "/oauth2/clients/", "registration access token"),
    ("PUT", "/oauth2/clients/", "registration access token"),
    ("GET", "/oauth2/clients/", "client secret"),
    ("PUT", "/oauth2/clients/", "client secret"),
)
MARKER = "leaks_presented_off"


@dataclass(frozen=True)
class Secret:
    kind: str
    value: str
    #: Indexes of the requests in flight when authgate made it (empty: made outside a request).
    issued_by: frozenset[int] = frozenset()
    #: The request that first sent it (-1: known from the start): only what comes after may
    #: not repeat it (a consent page may show a PKCE challenge equal to a verifier sent later).
    since: int = -1


@dataclass(frozen=True)
class Exchange:
    index: int
    method: str
    path: str
    status: int
    text: str

    def label(self) -> str:
        return f"response #{self.index} to {self.method} {self.path} ({self.status})"


@dataclass
class Recorder:
    """What one test saw. Thread-safe: the app runs handlers in worker threads."""

    track_presented: bool = True
    secrets: dict[str, Secret] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    #: (logger, formatted line, requests begun when it was logged)
    logs: list[tuple[str, str, int]] = field(default_factory=list)
    _in_flight: set[int] = field(default_factory=set)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- secrets -------------------------------------------------------------------------

    def issued(self, kind: str, value: str) -> None:
        with self._lock:
            known = self.secrets.get(value)
            issued_by = frozenset(self._in_flight) | (known.issued_by if known else frozenset())
            self.secrets[value] = Secret(kind, value, issued_by)

    def presented(self, kind: str, value: str, since: int = -1) -> None:
        if not self.track_presented or len(value) < MIN_PRESENTED.get(kind, MIN_OTHER):
            return
        with self._lock:
            self.secrets.setdefault(value, Secret(kind, value, since=since))

    def _presented_in(self, request: httpx.Request | httpx2.Request, index: int) -> None:
        fields: list[tuple[str, str]] = parse_qsl(
            request.url.query.decode(), keep_blank_values=True
        )
        body = request.content
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            fields += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        elif content_type.startswith("application/json"):
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):  # not JSON, or nested too deep to read
                parsed = None
            if isinstance(parsed, dict):
                fields += [(k, v) for k, v in parsed.items() if isinstance(v, str)]
        for name, value in fields:
            if name in PRESENTED:
                self.presented(PRESENTED[name], value, index)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            self.presented("bearer token", credentials.strip(), index)
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                decoded = ""
            self.presented("client secret", decoded.partition(":")[2], index)

    # -- traffic -------------------------------------------------------------------------

    def send(
        self, original: Callable[[HttpRequest], HttpResponse], request: HttpRequest
    ) -> HttpResponse:
        """Send ``request`` through ``original`` (the test client's transport, or a live
        server's for tests/security/live.py) and record both ways."""
        request.read()
        with self._lock:
            index = self._next
            self._next += 1
            self._in_flight.add(index)
        self._presented_in(request, index)
        try:
            response = original(request)
        finally:
            with self._lock:
                self._in_flight.discard(index)
        content_type = response.headers.get("content-type", "")
        body = b""
        if not content_type.startswith("text/event-stream"):  # an event stream may not end
            body = response.read()
            # A fresh response the client reads as usual (so it still times it: ``elapsed``).
            # The stream is httpx2's whichever generation made the response (live.py reads
            # the body it received instead), hence a constructor the checker cannot follow.
            response = cast(Any, type(response))(
                response.status_code,
                headers=response.headers,
                stream=httpx2.ByteStream(body),
                request=request,
                extensions=response.extensions,
            )
        headers = "\n".join(
            f"{name}: {value}"
            for name, value in response.headers.multi_items()
            if name.lower() != "set-cookie"  # a session cookie is issued there, and only there
        )
        text = headers + "\n\n" + body.decode("utf-8", "replace")
        exchange = Exchange(index, request.method, request.url.path, response.status_code, text)
        with self._lock:
            self.exchanges.append(exchange)
        return response

    def log(self, logger: str, line: str) -> None:
        with self._lock:
            self.logs.append((logger, line, self._next))

    def kinds(self) -> set[str]:
        """The kinds of secret recorded so far (what the checker is looking for)."""
        with self._lock:
            return {s.kind for s in self.secrets.values()}

    # -- the rule ------------------------------------------------------------------------

    def leaks(self, audit: list[tuple[str, str]] | None = None) -> list[str]:
        """Where a secret was seen where it must not be: ``[]`` when nothing leaked."""
        found: list[str] = []
        values = [s for s in self.secrets.values() if s.value]
        for number, (logger, line, begun) in enumerate(self.logs):
            found += [
                f"{s.kind} in log line #{number} ({logger})"
                for s in values
                if begun > s.since and s.value in line
            ]
        for label, entry in audit or []:
            found += [f"{s.kind} in audit entry {label}" for s in values if s.value in entry]
        for exchange in self.exchanges:
            for secret in values:
                if exchange.index < secret.since or secret.value not in exchange.text:
                    continue
                if not self._allowed(secret, exchange):
                    issuer = ", ".join(f"#{i}" for i in sorted(secret.issued_by)) or "a fixture"
                    found.append(f"{secret.kind} (issued by {issuer}) in {exchange.label()}")
        return sorted(set(found))

    @staticmethod
    def _allowed(secret: Secret, exchange: Exchange) -> bool:
        if exchange.status >= 400:
            return False
        if exchange.index in secret.issued_by:
            return True
        return any(
            exchange.method == method and exchange.path.startswith(prefix) and secret.kind == kind
            for method, prefix, kind in EXEMPT
        )


class _LogCapture(logging.Handler):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.DEBUG)
        self.recorder = recorder
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted: keep its raw parts
            line = f"{record.msg!r} {record.args!r}"
        self.recorder.log(record.name, line)


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Install the hooks for as long as the block runs."""
    from authgate.web.pages import admin_users

    with ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        generate = prefixed.generate

        def recorded_generate(kind: str) -> prefixed.PrefixedSecret:
            made = generate(kind)
            recorder.issued(KINDS.get(kind, f"ag{kind} secret"), made.value)
            return made

        sign = jose.sign

        def recorded_sign(*args: Any, **kwargs: Any) -> str:
            token = sign(*args, **kwargs)
            recorder.issued("signed access token (JWT)", token)
            return token

        make_password = admin_users.generated_password

        def recorded_password() -> str:
            password = make_password()
            recorder.issued("password", password)
            return password

        handle = testclient._TestClientTransport.handle_request

        def recorded_handle(
            self: testclient._TestClientTransport, request: httpx2.Request
        ) -> httpx2.Response:
            return recorder.send(lambda r: handle(self, r), request)

        mp.setattr(prefixed, "generate", recorded_generate)
        mp.setattr(jose, "sign", recorded_sign)
        mp.setattr(admin_users, "generated_password", recorded_password)
        mp.setattr(testclient._TestClientTransport, "handle_request", recorded_handle)
        for password in FIXTURE_PASSWORDS:
            recorder.presented("password", password)

        logger = logging.getLogger("authgate")
        handler = _LogCapture(recorder)
        saved_level = logger.level
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
        stack.callback(logger.setLevel, saved_level)
        stack.callback(logger.removeHandler, handler)
        yield recorder


def audit_entries(services: Any) -> list[tuple[str, str]]:
    """Every audit event of the test's database: (action and id, the event as JSON text).

    Nothing when the test's ``services`` has no store or its database is down on purpose (the
    fault-injection tests): the logs and responses are still checked."""
    store = getattr(getattr(services, "ctx", None), "store", None)
    if store is None:
        return []
    entries: list[tuple[str, str]] = []
    for page in range(50):  # bounded: a test writes far fewer than 50 pages
        try:
            events, total = store.list_audit(AuditQuery(limit=200, offset=page * 200))
        except StoreUnavailableError:
            return entries
        entries += [
            (f"{e.action} {e.id}", json.dumps(dataclasses.asdict(e), default=str)) for e in events
        ]
        if len(entries) >= total or not events:
            break
    return entries


def flow_entries(client: Any, services: Any) -> list[tuple[str, str]]:
    """Every flow step of the test's database, once the app's writer has written them: what a
    step says beyond the identifiers a client sends in the clear (its detail carries prefixes
    only, core/flows.py). The identifiers are left out because this check, unlike the log's,
    does not know when a step was written: a hostile-input test sends one string as a
    client_id and later as a code, and that client_id is no leak."""
    writer = getattr(getattr(getattr(client, "app", None), "state", None), "flow_writer", None)
    store = getattr(getattr(services, "ctx", None), "store", None)
    if writer is None or store is None:
        return []
    entries: list[tuple[str, str]] = []
    try:
        writer.flush()
        found, _ = store.list_flows(FlowQuery(limit=500))
        for flow in found:
            for step in store.list_flow_steps(flow.id):
                said = {"kind": step.kind, "reason": step.reason, "detail": step.detail}
                text = json.dumps(said, default=str)
                entries.append((f"flow step {step.kind} {step.id}", text))
    except StoreUnavailableError:
        return entries
    return entries


RECORDER = pytest.StashKey[Recorder]()
STACK = pytest.StashKey[ExitStack]()


def _watched(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return "client" in names or "services" in names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the leak checker tracks only issued secrets, not credentials the test "
        "presents (fuzz tests send arbitrary text in credential fields)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if _watched(item):
        recorder = Recorder(track_presented=item.get_closest_marker(MARKER) is None)
        stack = ExitStack()
        stack.enter_context(recording(recorder))
        item.stash[RECORDER] = recorder
        item.stash[STACK] = stack
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield  # a failing test raises here: its own failure is the one to report
    recorder = item.stash.get(RECORDER, None)
    if recorder is not None:
        services = getattr(item, "funcargs", {}).get("services")
        audit = audit_entries(services) if services is not None else []
        client = getattr(item, "funcargs", {}).get("client")
        audit += flow_entries(client, services) if services is not None else []
        found = recorder.leaks(audit)
        if found:
            shown = "\n  ".join(found[:20])
            pytest.fail(f"secret leak ({len(found)}):\n  {shown}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        stack = item.stash.get(STACK, None)
        if stack is not None:
            stack.close()


@pytest.fixture
def leak_recorder(request: pytest.FixtureRequest) -> Recorder:
    """What the checker has recorded for the running test (it must use ``client`` or
    ``services``), for tests that look at the checker's view directly."""
    recorder: Recorder | None = request.node.stash.get(RECORDER, None)
    assert recorder is not None, "the leak checker watches tests using client or services"
    return recorder
