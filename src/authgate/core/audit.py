"""The audit trail: one event per security-relevant change, named ``noun.past_participle``.

Details never carry a secret: callers pass identifiers (ids, prefixes), never tokens.
"""

from __future__ import annotations

from typing import Any

from authgate.core.context import Actor, Context
from authgate.core.models import AuditEvent
from authgate.crypto import ids

# Keys that must never reach the audit log, whatever a caller passes.
_FORBIDDEN_KEYS = frozenset(
    {"password", "secret", "client_secret", "token", "code", "refresh_token", "access_token"}
)


def record(
    ctx: Context,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Append an event to the audit trail now, in a transaction of its own."""
    event = new_event(ctx, actor, action, target_type=target_type, target_id=target_id, **details)
    ctx.store.append_audit(event)
    return event


def new_event(
    ctx: Context,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """The event ``record`` would append, for a store method that appends it in the same
    transaction as the change it describes (and only if that change happened)."""
    for key in details:
        if key in _FORBIDDEN_KEYS:
            raise ValueError(f"audit details must not carry {key!r}")
    event = AuditEvent(
        id=ids.time_ordered_id(),
        at=ctx.clock.now(),
        action=action,
        actor_type=actor.type,
        actor_id=actor.id,
        target_type=target_type,
        target_id=target_id,
        ip=actor.ip,
        user_agent=actor.user_agent[:256] if actor.user_agent else None,
        request_id=actor.request_id,
        details=details,
    )
    return event
