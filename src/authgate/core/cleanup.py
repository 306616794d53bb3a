"""Housekeeping: expired sessions, codes, tokens, spent grants and upstream sign-ins in
progress go, in small batches.

Nothing here changes what any request sees: a row is deleted only ``retention`` after it
expired (a grant once nothing refers to it any more), and every lookup already treats an
expired row as absent. The retention keeps recent rows for forensics and for the replay checks
that look at spent codes and rotated refresh tokens. Every node may run this at once: each
batch is its own short transaction, and rows another node is deleting are skipped.

Unused self-registered clients — dynamically registered and metadata-document ones — are
purged here too (``client_expiry.purge_stale_self_registered_apps``, audited as ``client.purged``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from authgate.core import client_expiry
from authgate.core.context import SYSTEM, Context
from authgate.core.ports import EXPIRED_KINDS


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """Rows deleted by kind (``clients`` for purged registrations); ``complete`` is False when
    a kind still had expired rows after ``max_batches`` batches (the next run goes on)."""

    deleted: dict[str, int] = field(default_factory=dict)
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def run(
    ctx: Context, *, retention: timedelta, batch_size: int, max_batches: int = 20
) -> CleanupReport:
    """One cleanup pass: at most ``max_batches`` batches of ``batch_size`` rows per kind."""
    if batch_size < 1 or max_batches < 1:
        raise ValueError("batch_size and max_batches must be at least 1")
    before = ctx.clock.now() - retention
    deleted: dict[str, int] = {}
    complete = True
    for kind in EXPIRED_KINDS:
        total = 0
        for _ in range(max_batches):
            count = ctx.store.purge_expired(kind, before, batch_size)
            total += count
            if count < batch_size:
                break
        else:
            complete = False
        deleted[kind] = total
    deleted["clients"] = len(client_expiry.purge_stale_self_registered_apps(ctx, SYSTEM))
    return CleanupReport(deleted, complete)
