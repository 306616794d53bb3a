"""The flow timeline: every step of one authorization, for operators (docs/flow-reasons.md).

A *flow* is what happens for one authorization: the client's registration, the authorization
request, sign-in, consent, the code, its redemption (with the ID token it carries), each
refresh and revocation, UserInfo's refusals, and the metadata-document fetches and client
authentications on the way. Discovery requests (metadata, JWKS) are not recorded: they carry
nothing that ties them to a client (docs/decisions.md).

Its id travels with the authorization: the authorization request's id is derived from the
request itself (``authorization_flow_id``, the same on every node and on every page of the
request), the code carries it (``AuthorizationCode.flow_id``) and the grant family it starts
too (``Grant.flow_id``), so a refresh on another node continues the same flow. A
``client_credentials`` or refresh request that cannot be tied to one starts its own.

A flow that a request starts, of one step, whose id the request never handed out (every
``client_credentials`` grant, most refusals that are tied to nothing) can never have another
step: it is stored as that step alone, whose id is the flow's (``FlowStep.alone``), without a
row of ``flows`` to summarise it. That row was about a third of what the timeline's writer
spent on a ``client_credentials`` request (docs/decisions.md); the searches read such flows off
the step.

Steps are collected per request in a ``Trace`` that the protocol edge opens (``web/flows.py``)
and core functions add to through ``note`` and ``step``; the edge hands them to a background
writer, off the request path. Details carry identifiers and prefixes, never a secret, code,
token or password value: ``step`` refuses such keys, as the audit log does.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from authgate.crypto import ids

Outcome = Literal["ok", "refused", "narrowed"]
#: What a step is; the timeline shows them in this vocabulary.
StepKind = Literal[
    "authorize",
    "sign_in",
    "consent",
    "code_issued",
    "token",
    "refresh",
    "client_credentials",
    "revocation",
    "introspection",
    "client_auth",
    "document_fetch",
    "registration",
    "userinfo",
    "error_page",
]

# Never a value of these, whatever a caller passes (as core/audit.py).
_FORBIDDEN_KEYS = frozenset(
    {
        "password",
        "secret",
        "client_secret",
        "token",
        "code",
        "refresh_token",
        "access_token",
        "code_verifier",
        "client_assertion",
    }
)
#: The length of a prefix of a request id that a person reads off an error page.
REFERENCE_LENGTH = 8


@dataclass(slots=True)
class FlowStep:
    """One row of ``flow_steps``: what one request did in a flow.

    Not frozen, unlike the other values here, only for speed: every token request makes one,
    and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) took three times
    as long. Nothing assigns to a step once made (``dataclasses.replace`` makes another)."""

    id: str
    flow_id: str
    #: Wall-clock nanoseconds when the step was recorded: orders steps of the same instant.
    seq: int
    at: datetime
    kind: str
    outcome: str
    reason: str | None
    client_id: str | None
    user_id: str | None
    resource: str | None
    request_id: str | None
    reference: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def alone(self) -> bool:
        """The only step its flow will ever have (its id is the flow's): no ``flows`` row."""
        return self.id == self.flow_id


#: Where a step stands in timeline order: its ``at``, then its ``seq``.
StepPosition = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class Flow:
    """One row of ``flows``: the summary the searches and the console list."""

    id: str
    started_at: datetime
    last_at: datetime
    client_id: str | None
    user_id: str | None
    resource: str | None
    steps: int
    refusals: int
    last_outcome: str
    last_reason: str | None


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """Filters of a flow search; ``since`` inclusive and ``until`` exclusive (on ``last_at``);
    ``reason``: a step of the flow refused with it; ``reference``: the request reference of a
    step that has a reason (an error page shows it: a refusal)."""

    client_id: str | None = None
    user_id: str | None = None
    resource: str | None = None
    reason: str | None = None
    reference: str | None = None
    refused: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


@dataclass(slots=True)
class PendingStep:
    kind: str
    outcome: Outcome
    reason: str | None
    detail: dict[str, Any]


@dataclass(slots=True)
class Trace:
    """The steps one request records, and the identifiers it learns on the way."""

    request_id: str | None
    flow_id: str | None = None
    client_id: str | None = None
    user_id: str | None = None
    resource: str | None = None
    steps: list[PendingStep] = field(default_factory=list)
    #: How the client authenticated, told by ``authenticated()``: the next step says it.
    client_auth: str | None = None
    #: The id a flow this request starts gets (when nothing ties it to an earlier one).
    new_id: str | None = None
    #: That id was handed out (a grant carries it): later requests may add steps to the flow.
    new_id_given: bool = False
    #: The reason a core step already gave for the refusal the edge is about to record
    #: (a metadata document that could not be fetched, say), over the error's generic one.
    reason_hint: str | None = None


_CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "authgate_flow_trace", default=None
)


def begin(trace: Trace) -> contextvars.Token[Trace | None]:
    """Make ``trace`` the one this request (and the threads it calls) records into."""
    return _CURRENT.set(trace)


def end(token: contextvars.Token[Trace | None]) -> None:
    _CURRENT.reset(token)


def current() -> Trace | None:
    return _CURRENT.get()


def note(
    *,
    flow_id: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
    resource: str | None = None,
) -> None:
    """Tell the current flow (if recording) who and what it is about; the first value wins,
    so the flow an authorization carries is not replaced by the one a request would start."""
    trace = _CURRENT.get()
    if trace is None:
        return
    trace.flow_id = trace.flow_id or flow_id
    trace.client_id = trace.client_id or client_id
    trace.user_id = trace.user_id or user_id
    trace.resource = trace.resource or resource


def step(
    kind: StepKind,
    outcome: Outcome = "ok",
    reason: str | None = None,
    **detail: Any,
) -> None:
    """Record a step of the current flow (nothing when not recording)."""
    for key in detail:
        if key in _FORBIDDEN_KEYS:
            raise ValueError(f"flow details must not carry {key!r}")
    trace = _CURRENT.get()
    if trace is None:
        return
    if trace.client_auth is not None:
        detail = {"client_auth": trace.client_auth, **detail}
        trace.client_auth = None
    trace.steps.append(PendingStep(kind, outcome, reason, detail))
    if outcome == "refused" and reason is not None:
        trace.reason_hint = reason


def authenticated(method: str) -> None:
    """The client authenticated with ``method`` (never a credential): the step that follows
    (the grant, the revocation, or its refusal) says so in its detail (``client_auth``),
    rather than a step of its own, a second row per token request. A failed authentication
    is a step of its own (``client_auth``, refused with its reason)."""
    trace = _CURRENT.get()
    if trace is not None:
        trace.client_auth = method


def current_flow_id() -> str | None:
    """The flow this request belongs to: the one it was tied to, else the one it starts. For a
    caller that stores it (a code, a grant), so that later requests continue the flow."""
    trace = _CURRENT.get()
    if trace is None:
        return None
    if trace.flow_id is None:
        trace.new_id_given = True
    return current_flow_id_of(trace)


def current_flow_id_of(trace: Trace) -> str:
    """``trace``'s flow: the one it was tied to, else the one it starts (made on first use)."""
    if trace.flow_id is not None:
        return trace.flow_id
    if trace.new_id is None:
        trace.new_id = ids.time_ordered_id()
    return trace.new_id


def alone(trace: Trace) -> bool:
    """``trace``'s steps are a flow of their own that no later request can join: one step,
    tied to nothing, its flow's id never handed out (stored as ``FlowStep.alone``)."""
    return trace.flow_id is None and not trace.new_id_given and len(trace.steps) == 1


def steps_of(trace: Trace, at: datetime, seq: int) -> list[FlowStep]:
    """The rows of ``trace``'s steps, recorded at ``at`` (``seq``: wall-clock nanoseconds,
    which order the steps of one instant); a flow the trace starts gets its id here."""
    flow_id = current_flow_id_of(trace)
    reference = reference_of(trace.request_id)
    step_id = flow_id if alone(trace) else None
    return [
        FlowStep(
            id=step_id or ids.time_ordered_id(),
            flow_id=flow_id,
            seq=seq + index,
            at=at,
            kind=pending.kind,
            outcome=pending.outcome,
            reason=pending.reason,
            client_id=trace.client_id,
            user_id=trace.user_id,
            resource=trace.resource,
            request_id=trace.request_id,
            reference=reference,
            detail=pending.detail,
        )
        for index, pending in enumerate(trace.steps)
    ]


def untied_refusal(trace: Trace, bounded: bool) -> bool:
    """``trace`` ends in a refusal and belongs to no earlier flow (or its endpoint is
    ``bounded``): it starts a flow of its own, subject to the writer's flood bound, whatever
    steps (a client authentication) went well before the refusal."""
    return (trace.flow_id is None or bounded) and trace.steps[-1].outcome == "refused"


def authorization_flow_id(key: bytes, pairs: Iterable[tuple[str, str]]) -> str:
    """The flow id of an authorization request: an HMAC of its parameters, so the request, the
    sign-in it sends the person through and the consent form posting it back (each carrying
    the same query) are one flow, on whichever node they land, without storing anything. A
    client's retry of the very same request (same state, same PKCE challenge) is the same
    flow; a new attempt has a new state or challenge, hence a new flow."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    digest = hmac.new(key, b"authgate-flow:" + canonical.encode(), hashlib.sha256).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


#: Added to an authorization request's query by the sign-in step (``web/protocol/authorize.py``);
#: not part of the request, so not part of its flow id.
LOGIN_MARKER = "authgate_login"


def authorization_flow_of(key: bytes, pairs: Iterable[tuple[str, str]]) -> str:
    """The flow id of the authorization request with these query parameters (the sign-in
    marker left out)."""
    return authorization_flow_id(key, [(k, v) for k, v in pairs if k != LOGIN_MARKER])


def flow_of_return_to(key: bytes, return_to: str | None) -> str | None:
    """The authorization flow a sign-in returns to (a local ``/oauth2/authorize`` URL), if it
    returns to one: the password form's and an upstream provider's sign-ins alike."""
    if not return_to:
        return None
    parts = urlsplit(return_to)
    if parts.path != "/oauth2/authorize" or parts.netloc:
        return None
    return authorization_flow_of(key, parse_qsl(parts.query, keep_blank_values=True))


def reference_of(request_id: str | None) -> str | None:
    """The short reference a person reads off an error page: the start of the request id."""
    return request_id[:REFERENCE_LENGTH] if request_id else None
