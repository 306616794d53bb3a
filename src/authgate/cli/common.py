"""What every CLI command shares: settings, services, the ``--json`` flag, output and errors.

Admin commands build their services with ``dev=True``: when ``AUTHGATE_SECRET_KEY`` is unset
they read (or create once) the development key in the data directory. They never need the key
for what they do (CSRF tokens and key encryption belong to the server), but ``build_services``
insists on one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import pydantic
from sqlalchemy.engine import make_url

from authgate.config import Settings
from authgate.core.context import Context
from authgate.core.errors import ManagementError, OAuthError
from authgate.core.ports import StoreUnavailableError
from authgate.services import ConfigurationError, Services, build_services, check_schema

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text."
)


class AuthgateGroup(click.Group):
    """A group that turns authgate's errors into a message on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ManagementError as exc:
            raise click.ClickException(describe(exc)) from exc
        except OAuthError as exc:
            raise click.ClickException(exc.description) from exc
        except (ConfigurationError, StoreUnavailableError) as exc:
            raise click.ClickException(str(exc)) from exc


def describe(exc: ManagementError) -> str:
    details = "; ".join(f"{field}: {message}" for field, message in exc.validations.items())
    if not details or all(message in exc.detail for message in exc.validations.values()):
        return exc.detail
    return f"{exc.detail} ({details})"


def load_settings() -> Settings:
    """The settings from the environment (``AUTHGATE_*``), or a readable error."""
    try:
        # Every field has a default; the empty mapping tells mypy so without the pydantic plugin.
        return Settings(**{})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"AUTHGATE_{'.'.join(map(str, err['loc'])).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise click.ClickException(f"Invalid settings: {problems}") from exc


def open_services() -> Services:
    """Services on a migrated database, closed when the command ends."""
    settings = load_settings()
    check_schema(settings)
    services = build_services(settings, dev=True)
    click.get_current_context().call_on_close(services.store.close)
    return services


def open_context() -> Context:
    """The core context admin commands run in (they act as ``core.context.SYSTEM``)."""
    return open_services().ctx


def redacted_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the human-readable ``text``."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain left-aligned table; ``(none)`` when there are no rows."""
    if not rows:
        return "(none)"
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: list[tuple[str, object]]) -> str:
    """``label: value`` lines with aligned values."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in pairs)
