"""``authgate tokens``: personal API tokens for the management API and scripts."""

from __future__ import annotations

from datetime import timedelta

import click

from authgate.cli.common import emit, fields, json_option, open_context
from authgate.core import accounts
from authgate.core.context import SYSTEM
from authgate.core.errors import NotFound
from authgate.schemas import ApiTokenCreated


@click.group()
def tokens() -> None:
    """Personal API tokens (`Authorization: Bearer agpat_…`)."""


@tokens.command()
@click.option("--user", "username", required=True, help="The username the token acts for.")
@click.option("--name", required=True, help="What the token is for.")
@click.option(
    "--lifetime-days",
    type=click.IntRange(1, 5 * 366),
    default=None,
    help="Days until it expires (default: never).",
)
@json_option
def create(username: str, name: str, lifetime_days: int | None, as_json: bool) -> None:
    """Create an API token; the full value is printed this once only."""
    ctx = open_context()
    user = ctx.store.get_user_by_username(username.strip().lower())
    if user is None:
        raise NotFound(f"No user named {username!r}")
    lifetime = timedelta(days=lifetime_days) if lifetime_days else None
    token, value = accounts.create_api_token(ctx, SYSTEM, user, name, lifetime)
    out = ApiTokenCreated.of(token, value)
    expires = out.expires_at.isoformat() if out.expires_at else "never"
    text = fields(
        [("Token ID", out.id), ("User", user.username), ("Expires", expires), ("Token", value)]
    )
    emit(
        as_json,
        out.model_dump(mode="json"),
        f"{text}\nStore the token now: it will not be shown again.",
    )
