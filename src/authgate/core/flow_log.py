"""Reading and bounding the flow timeline (core/flows.py): what the management API, the CLI
and the admin console ask, and the cleanup that keeps it within its retention and row cap."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from authgate.core import client_profiles, flows, tokens
from authgate.core.authorize import CODE_KIND
from authgate.core.context import Context
from authgate.core.errors import NotFound, OAuthError
from authgate.core.flows import REFERENCE_LENGTH, Flow, FlowQuery, FlowStep
from authgate.core.params import Params
from authgate.core.ports import StoreUnavailableError
from authgate.crypto import secrets

_REFERENCE = re.compile(rf"[0-9A-Za-z._-]{{{REFERENCE_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class Timeline:
    flow: Flow
    steps: Sequence[FlowStep]


def timeline(ctx: Context, flow_id_or_reference: str) -> Timeline:
    """One flow and its steps, by its id or by the reference a person read off an error page
    (the most recent flow with a step of that request, when several match)."""
    key = flow_id_or_reference.strip()
    flow = ctx.store.get_flow(key) if key else None
    if flow is None and _REFERENCE.fullmatch(key):
        found, _ = ctx.store.list_flows(FlowQuery(reference=key, limit=1))
        flow = found[0] if found else None
    if flow is None:
        raise NotFound("No flow has this id or reference")
    return Timeline(flow, ctx.store.list_flow_steps(flow.id))


def failing_clients(
    ctx: Context, window: timedelta = timedelta(hours=1), limit: int = 10
) -> Sequence[tuple[str, int]]:
    """The clients refused most often in the last ``window``: (client_id, refusals)."""
    return ctx.store.failing_clients(ctx.clock.now() - window, limit)


def purge(
    ctx: Context, *, retention: timedelta, cap: int, batch_size: int, max_batches: int = 20
) -> int:
    """Delete steps older than ``retention`` and the oldest beyond ``cap`` rows, then the flows
    left without a step or inactive for ``retention``; the number of rows deleted."""
    before = ctx.clock.now() - retention
    cutoff = ctx.store.flow_step_cutoff(cap)
    total = 0
    for _ in range(max_batches):
        count = ctx.store.purge_flow_steps(before, cutoff, batch_size)
        total += count
        if count < batch_size:
            break
    for _ in range(max_batches):
        count = ctx.store.purge_flows(before, batch_size)
        total += count
        if count < batch_size:
            break
    return total


#: The client label of a metric for every client that is neither the operator's nor a known one.
OTHER_CLIENT = "other"


def client_label(ctx: Context, client_id: str | None) -> str:
    """A metric's client label with a bounded set of values: the client_id of an app the
    operator registered, ``profile:<id>`` for a client that matches a known profile, else
    ``other`` (self-registered and document clients are as many as anyone makes)."""
    app = ctx.store.get_app(client_id) if client_id else None
    if app is None:
        return OTHER_CLIENT
    if not app.dynamically_registered and not app.metadata_document:
        return app.id
    profile = client_profiles.match_app(ctx, app)
    return f"profile:{profile.id}" if profile is not None else OTHER_CLIENT


def tie_refused_token_request(ctx: Context, params: Params) -> None:
    """A token request refused before core read its code or refresh token (the client failed
    to authenticate) still belongs to that code's or token's flow: find it, reading the row
    only when a flow is being recorded and only for such a refusal (never on the hot path)."""
    trace = flows.current()
    if trace is None or trace.flow_id is not None:
        return
    with contextlib.suppress(StoreUnavailableError, OAuthError):  # the refusal stands
        _tie(ctx, params)


def _tie(ctx: Context, params: Params) -> None:
    grant_type = params.get("grant_type")
    if grant_type == "authorization_code":
        parsed = secrets.parse(params.get("code") or "", CODE_KIND)
        code = ctx.store.get_code_by_prefix(parsed.prefix) if parsed else None
        if parsed and code and secrets.constant_time_equal(code.code_hash, parsed.hash):
            flows.note(flow_id=code.flow_id, user_id=code.user_id, resource=code.resource)
    elif grant_type == "refresh_token":
        found = tokens.find_refresh_token_and_grant(ctx, params.get("refresh_token") or "")
        if found is not None:
            token, grant, _ = found
            flow_id = grant.flow_id if grant else None
            flows.note(flow_id=flow_id, user_id=token.user_id, resource=token.audience)


def tie_refused_bearer(ctx: Context, value: str) -> None:
    """A refused access token (at UserInfo) that authgate issued, whatever its state, belongs
    to its grant's flow, client, person and resource; a value that names no token of ours
    leaves the refusal untied. Read only for a refusal, and only while a flow is recorded."""
    if flows.current() is None:
        return
    with contextlib.suppress(StoreUnavailableError):  # the refusal stands
        token = tokens.find_access_token(ctx, value)
        if token is None:
            return
        grant = ctx.store.get_grant(token.grant_id) if token.grant_id else None
        flows.note(
            flow_id=grant.flow_id if grant else None,
            client_id=token.app_id,
            user_id=token.user_id,
            resource=token.audience,
        )
