"""Self-registered clients that nobody uses expire (``registration_client_ttl_days``).

Unused registrations pile up (every MCP client that registers and goes away leaves one); the
purge here keeps ``registration_max_clients`` and ``client_metadata_max_clients`` from filling
with them. It runs with the daily cleanup (core/cleanup.py), before a registration or a new
metadata document is refused at a cap, and from ``authgate registration purge``.
"""

from __future__ import annotations

from datetime import timedelta

from authgate.core import audit
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import Actor, Context
from authgate.core.models import App


def purge_stale_dynamic_apps(ctx: Context, actor: Actor, *, dry_run: bool = False) -> list[App]:
    """Delete the dynamically registered apps nobody has used for ``registration_client_ttl_days``
    (last successful token request, else registration); returns them, least recently seen first.

    Unused registrations pile up (every MCP client that registers and goes away leaves one);
    this is what keeps ``registration_max_clients`` from filling with them. 0 days = never.
    """
    return _purge_stale(ctx, actor, dry_run=dry_run, documents=False)


def purge_stale_self_registered_apps(
    ctx: Context, actor: Actor, *, dry_run: bool = False
) -> list[App]:
    """``purge_stale_dynamic_apps``, and the metadata-document clients unused as long (last
    successful token request, else first load of the document). A purged client is deleted
    with its grants and tokens, like a dynamically registered one: any token request counts as
    use, so only a client nobody has used for that long goes; if it comes back, its document
    is loaded again and the user is asked again."""
    return _purge_stale(ctx, actor, dry_run=dry_run, documents=True)


def _purge_stale(ctx: Context, actor: Actor, *, dry_run: bool, documents: bool) -> list[App]:
    ttl_days = runtime_settings.load(ctx).client_ttl_days
    if ttl_days <= 0:
        return []
    unused_since = ctx.clock.now() - timedelta(days=ttl_days)
    stale = list(ctx.store.list_stale_dynamic_apps(unused_since))
    if documents:
        stale += ctx.store.list_stale_document_apps(unused_since)
        stale.sort(key=lambda a: (a.last_used_at or a.created_at, a.id))
    if dry_run:
        return stale
    purged = []
    for app in stale:
        if not ctx.store.delete_app(app.id):
            continue  # deleted meanwhile (another node's purge, or its client)
        purged.append(app)
        last_seen = app.last_used_at or app.created_at
        audit.record(
            ctx,
            actor,
            "client.purged",
            target_type="app",
            target_id=app.id,
            name=app.name,
            last_seen_at=last_seen.isoformat(),
            ttl_days=ttl_days,
            metadata_document=app.metadata_document,
        )
    return purged
