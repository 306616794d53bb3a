"""``authgate users``: create, list, update, disable, enable and delete local users (as
``system``, through ``core.accounts``)."""

from __future__ import annotations

import sys

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import accounts
from authgate.core.context import SYSTEM
from authgate.schemas import UserOut


@click.group()
def users() -> None:
    """Local user accounts."""


def read_password(password: str | None, from_stdin: bool) -> str:
    """The password from --password, from stdin, or asked for twice without echo."""
    if password is not None and from_stdin:
        raise click.UsageError("Use either --password or --password-stdin, not both")
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        return password
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users.command()
@click.option("--username", required=True)
@click.option("--admin", "is_admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password", default=None, help="Visible in the process list: prefer the prompt.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--email", default="")
@click.option(
    "--email-verified",
    is_flag=True,
    help="The address reaches this person (ID tokens say email_verified true).",
)
@click.option("--name", default="", help="The display name.")
@json_option
def create(
    username: str,
    is_admin: bool,
    password: str | None,
    password_stdin: bool,
    email: str,
    email_verified: bool,
    name: str,
    as_json: bool,
) -> None:
    """Create a user who signs in with a password."""
    secret = read_password(password, password_stdin)
    user = accounts.create_user(
        open_context(),
        SYSTEM,
        username=username,
        password=secret,
        email=email,
        email_verified=email_verified,
        name=name,
        is_admin=is_admin,
    )
    out = UserOut.of(user)
    emit(as_json, out.model_dump(mode="json"), f"Created user.\n{_describe(out)}")


def _describe(out: UserOut) -> str:
    email = f"{out.email} ({'verified' if out.email_verified else 'unverified'})"
    return fields(
        [
            ("ID", out.id),
            ("Username", out.username),
            ("Name", out.name or "(none)"),
            ("Email", email if out.email else "(none)"),
            ("Admin", out.is_admin),
        ]
    )


@users.command()
@click.argument("user")
@click.option("--email", default=None, help="A new address (unverified unless said otherwise).")
@click.option(
    "--email-verified/--email-unverified",
    default=None,
    help="Whether the address reaches this person (ID tokens' email_verified).",
)
@click.option("--name", default=None, help="A new display name.")
@json_option
def update(
    user: str, email: str | None, email_verified: bool | None, name: str | None, as_json: bool
) -> None:
    """Change a user's (id or username) email address, its verification or display name."""
    if email is None and email_verified is None and name is None:
        raise click.UsageError(
            "Nothing to change: give --email, --email-verified/--email-unverified or --name"
        )
    ctx = open_context()
    target = accounts.find_user(ctx, user)
    updated = accounts.update_user(
        ctx,
        SYSTEM,
        target.id,
        email=None if email is None else email.strip(),
        email_verified=email_verified,
        name=name,
    )
    out = UserOut.of(updated)
    emit(as_json, out.model_dump(mode="json"), f"Updated user.\n{_describe(out)}")


@users.command(name="list")
@json_option
def list_users(as_json: bool) -> None:
    """List every user."""
    out = [UserOut.of(user) for user in open_context().store.list_users()]
    rows = [
        [u.id, u.username, "yes" if u.is_admin else "no", "yes" if u.disabled else "no"]
        for u in out
    ]
    emit(
        as_json,
        [u.model_dump(mode="json") for u in out],
        lambda: table(["ID", "USERNAME", "ADMIN", "DISABLED"], rows),
    )


def _set_disabled(user: str, disabled: bool, as_json: bool) -> None:
    ctx = open_context()
    updated = accounts.update_user(ctx, SYSTEM, accounts.find_user(ctx, user).id, disabled=disabled)
    out = UserOut.of(updated)
    word = "Disabled" if disabled else "Enabled"
    emit(as_json, out.model_dump(mode="json"), f"{word} user {out.username}.")


@users.command()
@click.argument("user")
@json_option
def disable(user: str, as_json: bool) -> None:
    """Disable a user (id or username): their sessions and their apps' grants end; JWT access
    tokens already issued stay valid until they expire."""
    _set_disabled(user, True, as_json)


@users.command()
@click.argument("user")
@json_option
def enable(user: str, as_json: bool) -> None:
    """Enable a disabled user (id or username)."""
    _set_disabled(user, False, as_json)


@users.command()
@click.argument("user")
@json_option
def delete(user: str, as_json: bool) -> None:
    """Delete a user (id or username) with their sessions, API tokens and their apps' grants;
    JWT access tokens already issued stay valid until they expire."""
    ctx = open_context()
    target = accounts.find_user(ctx, user)
    accounts.delete_user(ctx, SYSTEM, target.id)
    emit(as_json, {"id": target.id, "deleted": True}, f"Deleted user {target.username}.")
