"""``authgate flows``: the timeline of authorization flows, for operators (docs/flow-reasons.md).

``show`` prints one flow's steps, found by its id or by the reference a person read off an error
page; ``tail`` the most recently active flows (of one client, user or reason), and with
``--follow`` keeps printing flows as they change; ``failing`` the clients refused most in the
last hour; ``reasons`` the table of reason codes (``--markdown`` writes docs/flow-reasons.md).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import flow_log, flow_reasons
from authgate.core.flows import FlowQuery
from authgate.schemas.flows import FlowOut, FlowStepOut, FlowTimelineOut

#: Seconds between two looks at the database with ``tail --follow``.
FOLLOW_INTERVAL = 2.0


@click.group()
def flows() -> None:
    """The timeline of authorization flows: steps, outcomes and reasons for refusals."""


def _step_row(step: FlowStepOut) -> list[str]:
    outcome = step.outcome if step.reason is None else f"{step.outcome}: {step.reason}"
    detail = json.dumps(step.detail, sort_keys=True, default=str)
    return [
        step.at.isoformat(timespec="seconds"),
        step.kind,
        outcome,
        step.reference or "-",
        detail,
    ]


def _timeline_text(out: FlowTimelineOut) -> str:
    flow = out.flow
    head = fields(
        [
            ("Flow", flow.id),
            ("Client", flow.client_id or "-"),
            ("User", flow.user_id or "-"),
            ("Resource", flow.resource or "-"),
            ("Started", flow.started_at.isoformat(timespec="seconds")),
            ("Steps", f"{flow.steps} ({flow.refusals} refused)"),
        ]
    )
    steps = table(
        ["AT", "STEP", "OUTCOME", "REFERENCE", "DETAIL"], [_step_row(s) for s in out.steps]
    )
    seen: list[str] = []
    for step in out.steps:
        if step.reason and step.reason not in seen:
            seen.append(step.reason)
    notes = []
    for code in seen:
        reason = flow_reasons.BY_CODE.get(code)
        if reason is not None:
            notes.append(f"{code}: {reason.explanation}")
            if reason.fix:
                notes.append(f"  The client's developer should: {reason.fix}")
    return "\n\n".join(part for part in (head, steps, "\n".join(notes)) if part)


@flows.command()
@click.argument("flow")
@json_option
def show(flow: str, as_json: bool) -> None:
    """Print one flow's steps, by its id or by the reference shown on an error page."""
    out = FlowTimelineOut.of(flow_log.timeline(open_context(), flow))
    emit(as_json, out.model_dump(mode="json"), lambda: _timeline_text(out))


def _flow_row(flow: FlowOut) -> list[str]:
    last = flow.last_outcome if flow.last_reason is None else f"refused: {flow.last_reason}"
    return [
        flow.last_at.isoformat(timespec="seconds"),
        flow.id,
        flow.client_id or "-",
        flow.user_id or "-",
        str(flow.steps),
        str(flow.refusals),
        last,
    ]


_FLOW_HEADERS = ["LAST", "FLOW", "CLIENT", "USER", "STEPS", "REFUSED", "LAST OUTCOME"]


@flows.command()
@click.option("--client", "client_id", default=None, help="Only flows of this client_id.")
@click.option("--user", "user_id", default=None, help="Only flows of this user id.")
@click.option("--reason", default=None, help="Only flows with a step refused for this reason.")
@click.option("--refused", is_flag=True, help="Only flows with a refused step.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing flows as they change (Ctrl-C ends).")
@json_option
def tail(
    client_id: str | None,
    user_id: str | None,
    reason: str | None,
    refused: bool,
    limit: int,
    follow: bool,
    as_json: bool,
) -> None:
    """Print the most recently active flows, oldest first like ``tail``."""
    ctx = open_context()
    query = FlowQuery(
        client_id=client_id,
        user_id=user_id,
        reason=reason,
        refused=True if refused else None,
        limit=limit,
    )
    found, _ = ctx.store.list_flows(query)
    out = [FlowOut.of(flow) for flow in reversed(found)]
    emit(
        as_json,
        [f.model_dump(mode="json") for f in out],
        lambda: table(_FLOW_HEADERS, [_flow_row(f) for f in out]),
    )
    if not follow:
        return
    seen = {f.id: (f.last_at, f.steps) for f in out}
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            found, _ = ctx.store.list_flows(query)
            for flow in reversed(found):
                if seen.get(flow.id) != (flow.last_at, flow.steps):
                    seen[flow.id] = (flow.last_at, flow.steps)
                    item = FlowOut.of(flow)
                    if as_json:
                        click.echo(json.dumps(item.model_dump(mode="json"), default=str))
                    else:
                        click.echo("  ".join(_flow_row(item)))
    except KeyboardInterrupt:
        return


@flows.command()
@click.option("--minutes", type=click.IntRange(1, 7 * 24 * 60), default=60, show_default=True)
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@json_option
def failing(minutes: int, limit: int, as_json: bool) -> None:
    """The clients refused most often in the last MINUTES."""
    found = flow_log.failing_clients(open_context(), timedelta(minutes=minutes), limit)
    data = [{"client_id": c, "refusals": n} for c, n in found]
    emit(
        as_json,
        data,
        lambda: table(["CLIENT", "REFUSALS"], [[c, str(n)] for c, n in found]),
    )


@flows.command()
@click.option("--markdown", is_flag=True, help="As docs/flow-reasons.md.")
@json_option
def reasons(markdown: bool, as_json: bool) -> None:
    """Every reason code a refused step may carry, what it means and what to change."""
    if markdown:
        click.echo(flow_reasons.markdown(), nl=False)
        return
    data = [
        {"code": r.code, "explanation": r.explanation, "fix": r.fix} for r in flow_reasons.REASONS
    ]
    emit(
        as_json,
        data,
        lambda: table(
            ["CODE", "EXPLANATION"], [[r.code, r.explanation] for r in flow_reasons.REASONS]
        ),
    )
