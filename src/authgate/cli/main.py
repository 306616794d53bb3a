"""The ``authgate`` command: serve, migrate and administer (one module per noun).

Settings come from the ``AUTHGATE_*`` environment variables (see ``authgate settings``). Every
admin command acts as the ``system`` actor through the same core functions as the API, so it
is audited the same way. Errors print a message on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import importlib

import click

from authgate import __version__
from authgate.cli import (
    access,
    apps,
    audit,
    db,
    flows,
    keys,
    profiles,
    registration,
    resources,
    settings,
    tokens,
    upstream,
    users,
)
from authgate.cli.common import AuthgateGroup


class _Commands(AuthgateGroup):
    """``serve`` is loaded only when it runs: it needs the web framework and the HTTP server,
    which no other command does (an app list prints without them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "serve" and cmd_name not in self.commands:
            command: click.Command = importlib.import_module("authgate.cli.serve").serve
            self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="authgate")
def cli() -> None:
    """authgate: an OAuth 2.1 authorization server for MCP clients and servers."""


cli.add_command(db.db)
cli.add_command(apps.apps)
apps.apps.add_command(registration.purge)  # `apps purge`: dynamically registered apps
apps.apps.add_command(access.access)  # `apps access`: what client_credentials may reach
cli.add_command(users.users)
cli.add_command(tokens.tokens)
cli.add_command(resources.resources)
cli.add_command(keys.keys)
cli.add_command(settings.settings)
cli.add_command(registration.registration)
cli.add_command(audit.audit)
cli.add_command(flows.flows)
cli.add_command(profiles.profiles)
cli.add_command(profiles.test_client)
cli.add_command(upstream.upstream)


def main() -> None:
    cli(prog_name="authgate")
