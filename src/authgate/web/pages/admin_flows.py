"""Admin console: the flow timeline. A search (client, user, resource, reason, time, or the
reference a person read off an error page) with the clients failing most in the last hour, and
one flow's timeline, each refusal explained (core/flow_reasons.py)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.core import flow_log, flow_reasons
from authgate.core.accounts import SignedIn
from authgate.core.errors import NotFound
from authgate.core.flows import FlowQuery
from authgate.web import deps
from authgate.web.pages import common
from authgate.web.pages.admin_system import _day

FLOWS_PAGE = 50
_FILTERS = ("client_id", "user_id", "resource", "reason", "reference")


async def list_flows(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:2048] for k in _FILTERS}
    since, until = params.get("since", ""), params.get("until", "")
    refused = params.get("refused") == "on"
    reference = filters["reference"]
    ctx = deps.ctx_of(request)
    if reference and not any(v for k, v in filters.items() if k != "reference"):
        # A reference names one request: straight to its flow, when there is one.
        try:
            timeline = await run_in_threadpool(flow_log.timeline, ctx, reference)
        except NotFound:
            pass
        else:
            return RedirectResponse(f"/admin/flows/{timeline.flow.id}", status_code=303)
    page = max(1, min(common.whole_number(params.get("page", "1")) or 1, 100_000))
    query = FlowQuery(
        client_id=filters["client_id"] or None,
        user_id=filters["user_id"] or None,
        resource=filters["resource"] or None,
        reason=filters["reason"] or None,
        reference=reference or None,
        refused=True if refused else None,
        since=_day(since),
        until=_day(until, end=True),
        limit=FLOWS_PAGE,
        offset=(page - 1) * FLOWS_PAGE,
    )
    found, total = await run_in_threadpool(ctx.store.list_flows, query)
    failing = await run_in_threadpool(flow_log.failing_clients, ctx, timedelta(hours=1), 10)
    kept = {k: v for k, v in (filters | {"since": since, "until": until}).items() if v}
    if refused:
        kept["refused"] = "on"

    def link(number: int) -> str:
        return "/admin/flows?" + urlencode(kept | {"page": str(number)})

    pages = max(1, -(-total // FLOWS_PAGE))
    return common.page(
        request,
        "admin_flows.html",
        who,
        flows=found,
        total=total,
        page=page,
        pages=pages,
        previous=link(page - 1) if page > 1 else None,
        next=link(page + 1) if page < pages else None,
        filters=filters | {"since": since, "until": until},
        refused=refused,
        failing=failing,
        reasons=flow_reasons.REASONS,
        enabled=deps.settings_of(request).flows_enabled,
    )


async def show_flow(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    key = request.path_params["flow_id"][:64]
    try:
        timeline = await run_in_threadpool(flow_log.timeline, deps.ctx_of(request), key)
    except NotFound:
        return common.page(request, "admin_flow.html", who, timeline=None, key=key, status=404)
    return common.page(
        request,
        "admin_flow.html",
        who,
        timeline=timeline,
        key=key,
        reasons=flow_reasons.BY_CODE,
    )
