"""Management API for the flow timeline (``/flows``): search, one flow's timeline (by its id
or the reference a person read off an error page), the clients failing most, the reason codes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from authgate.core import flow_log, flow_reasons
from authgate.core.flows import FlowQuery
from authgate.schemas.flows import (
    FailingClientOut,
    FlowOut,
    FlowPage,
    FlowTimelineOut,
    ReasonOut,
)
from authgate.web.admin.audit import MAX_LIMIT, MAX_OFFSET, _aware
from authgate.web.admin.auth import Admin, Ctx

router = APIRouter(prefix="/flows", tags=["flows"])


@router.get("", response_model=FlowPage)
def list_flows(
    ctx: Ctx,
    who: Admin,
    client_id: Annotated[str | None, Query(max_length=2048)] = None,
    user_id: Annotated[str | None, Query(max_length=255)] = None,
    resource: Annotated[str | None, Query(max_length=2048)] = None,
    reason: Annotated[str | None, Query(max_length=64, description="a reason code")] = None,
    reference: Annotated[
        str | None, Query(max_length=64, description="the reference on an error page")
    ] = None,
    refused: Annotated[
        bool | None, Query(description="only flows with (or without) a refusal")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="ISO 8601, inclusive (last activity)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="ISO 8601, exclusive (last activity)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> FlowPage:
    """Flows, most recently active first, filtered and paged."""
    query = FlowQuery(
        client_id=client_id,
        user_id=user_id,
        resource=resource,
        reason=reason,
        reference=reference,
        refused=refused,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        offset=offset,
    )
    found, count = ctx.store.list_flows(query)
    return FlowPage(flows=[FlowOut.of(flow) for flow in found], count=count)


@router.get("/failing", response_model=list[FailingClientOut])
def failing_clients(
    ctx: Ctx,
    who: Admin,
    minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60)] = 60,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[FailingClientOut]:
    """The clients with the most refused steps in the last ``minutes``."""
    failing = flow_log.failing_clients(ctx, timedelta(minutes=minutes), limit)
    return [FailingClientOut(client_id=c, refusals=n) for c, n in failing]


@router.get("/reasons", response_model=list[ReasonOut])
def reasons(who: Admin) -> list[ReasonOut]:
    """Every reason code a refused step may carry (docs/flow-reasons.md)."""
    return [
        ReasonOut(code=r.code, explanation=r.explanation, fix=r.fix) for r in flow_reasons.REASONS
    ]


@router.get("/{flow}", response_model=FlowTimelineOut)
def show_flow(ctx: Ctx, who: Admin, flow: str) -> FlowTimelineOut:
    """One flow and its steps in order, by its id or by the reference an error page showed."""
    return FlowTimelineOut.of(flow_log.timeline(ctx, flow[:64]))
