"""Management API for the audit log (``/audit``): newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from authgate.core.models import AuditQuery
from authgate.schemas import AuditEventOut, AuditPage
from authgate.web.admin.auth import Admin, Ctx

router = APIRouter(prefix="/audit", tags=["audit"])

MAX_LIMIT = 200
# Far past any real log, and small enough for every database's OFFSET.
MAX_OFFSET = 1_000_000_000


def _aware(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; an ISO 8601 time without an offset is taken as UTC.

    A bound that lies before year 1 or after year 9999 once in UTC (``0001-01-01T00:00+05:00``)
    is the edge of time itself, not an error."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if moment.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=UTC)


@router.get("", response_model=AuditPage)
def list_audit(
    ctx: Ctx,
    who: Admin,
    action: Annotated[str | None, Query(max_length=128)] = None,
    actor_id: Annotated[str | None, Query(max_length=255)] = None,
    target_id: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditPage:
    query = AuditQuery(
        action=action,
        actor_id=actor_id,
        target_id=target_id,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        offset=offset,
    )
    events, count = ctx.store.list_audit(query)
    return AuditPage(events=[AuditEventOut.of(event) for event in events], count=count)
