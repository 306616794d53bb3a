"""``authgate serve``: run the server; ``--dev`` also migrates and bootstraps a playground.

In development mode an empty database gets an admin user with a random password, a personal
API token and a confidential "Demo app" with a secret. They are printed once, when created:
only hashes are stored, so a later start can say where they are but not show them again.
"""

from __future__ import annotations

import gc
import secrets
from dataclasses import dataclass
from typing import Any

import click
import uvicorn
from fastapi import FastAPI

from authgate.app import create_app
from authgate.cli.common import emit, fields, json_option, load_settings
from authgate.config import Settings
from authgate.core import accounts, clients
from authgate.core.context import SYSTEM, Context
from authgate.logs import configure_logging
from authgate.services import Services, build_services, check_schema, migrate_for_dev, warm_up
from authgate.web.connections import ServerLimits, protocol_factory

DEV_ADMIN = "admin"
DEMO_APP = "Demo app"
DEMO_REDIRECT_URIS = ("http://localhost:9876/callback", "http://127.0.0.1:9876/callback")


@dataclass(frozen=True, slots=True)
class DevBootstrap:
    """What a first development start created; the only time its secrets exist in clear."""

    username: str
    password: str
    api_token: str
    client_id: str
    client_secret: str

    def as_dict(self, issuer: str) -> dict[str, Any]:
        return {
            "issuer": issuer,
            "username": self.username,
            "password": self.password,
            "api_token": self.api_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": list(DEMO_REDIRECT_URIS),
        }


def bootstrap(ctx: Context) -> DevBootstrap | None:
    """Create the development admin, token and demo app, unless the database has users."""
    if ctx.store.count_users() > 0:
        return None
    password = secrets.token_urlsafe(18)
    user = accounts.create_user(ctx, SYSTEM, username=DEV_ADMIN, password=password, is_admin=True)
    _, token = accounts.create_api_token(ctx, SYSTEM, user, "dev bootstrap", None)
    demo = clients.AppFields(
        name=DEMO_APP, redirect_uris=DEMO_REDIRECT_URIS, client_type="confidential"
    )
    app = clients.create_app(ctx, SYSTEM, demo)
    _, secret = clients.create_secret(ctx, SYSTEM, app.id)
    return DevBootstrap(DEV_ADMIN, password, token, app.id, secret)


def created_text(made: DevBootstrap, issuer: str) -> str:
    base = issuer.rstrip("/")
    return "\n".join(
        [
            "Development bootstrap: created once; these secrets will not be shown again.",
            "",
            fields(
                [
                    ("Admin user", made.username),
                    ("Admin password", made.password),
                    ("API token", made.api_token),
                    ("Demo app client_id", made.client_id),
                    ("Demo app client_secret", made.client_secret),
                    ("Demo app redirect URIs", ", ".join(DEMO_REDIRECT_URIS)),
                ]
            ),
            "",
            f"Sign in:      {base}/login",
            f"Metadata:     {base}/.well-known/oauth-authorization-server",
            f'Admin API:    curl -H "Authorization: Bearer {made.api_token}" '
            f"{base}/api/v2/users/me",
        ]
    )


def existing_text(ctx: Context, settings: Settings) -> str:
    demo = next((app.id for app in ctx.store.list_apps() if app.name == DEMO_APP), None)
    lines = [
        f"Development data already exists in {settings.data_dir.resolve()}; its admin password, "
        "API token and client secret were printed when they were created.",
        f"  New API token:      authgate tokens create --user {DEV_ADMIN} --name dev",
    ]
    if demo is not None:
        lines.append(f"  New client secret:  authgate apps secrets create {demo}")
    lines.append(
        "  Start over:         stop authgate and delete the database "
        f"({settings.resolved_database_url})"
    )
    return "\n".join(lines)


def report_bootstrap(services: Services, as_json: bool) -> None:
    ctx, issuer = services.ctx, services.settings.issuer
    made = bootstrap(ctx)
    if made is not None:
        emit(as_json, made.as_dict(issuer), lambda: created_text(made, issuer))
    else:
        emit(
            as_json,
            {"issuer": issuer, "bootstrapped": False},
            existing_text(ctx, services.settings),
        )


def worker_app() -> FastAPI:
    """The app of one of several worker processes (``--workers`` > 1): uvicorn imports this by
    name in each process, which builds its own services (and database pool)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    services = build_services(settings)
    warm_up(services)
    return _settled(create_app(settings, services=services, background=True))


def _settled(app: FastAPI) -> FastAPI:
    """The app, with everything built so far exempt from the cyclic garbage collector.

    The modules, routes and caches of a started server live as long as the process; without
    this every full collection walks them all again, a pause of tens of milliseconds that
    showed as the 99th percentile of token requests (bench/README.md)."""
    gc.collect()
    gc.freeze()
    return app


def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        max_header_bytes=settings.http_max_header_bytes,
        request_timeout=settings.http_request_timeout_seconds,
        max_connections=settings.http_max_connections,
    )


@click.command()
@click.option(
    "--dev",
    is_flag=True,
    help="Development mode: migrate, generate a secret key "
    "in the data directory and bootstrap an admin and a demo app.",
)
@click.option("--host", default=None, help="Listen address [default: AUTHGATE_HOST].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Listen port [default: AUTHGATE_PORT].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Server processes on the port [default: AUTHGATE_WORKERS].",
)
@json_option
def serve(
    dev: bool, host: str | None, port: int | None, workers: int | None, as_json: bool
) -> None:
    """Run the authorization server.

    SIGTERM (or Ctrl-C) stops it gracefully: it stops accepting connections, lets the requests
    in flight finish (for up to AUTHGATE_SHUTDOWN_GRACE_SECONDS), then exits."""
    settings = load_settings()
    workers = workers or settings.workers
    if dev and workers > 1:
        raise click.UsageError("--dev runs one process; leave out --workers (or set it to 1)")
    configure_logging(settings.log_level)
    if dev:
        migrate_for_dev(settings)
    check_schema(settings)
    services = build_services(settings, dev=dev)
    warm_up(services)
    if dev:
        report_bootstrap(services, as_json)
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "proxy_headers": False,
        "log_config": None,
        # Our middleware writes the access log (paths only, never query strings).
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # Header size, request time and connection limits (web/connections.py).
        "http": protocol_factory(server_limits(settings)),
    }
    if workers > 1:
        services.store.close()  # each worker opens its own pool
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)
        return
    app = _settled(create_app(settings, dev=dev, services=services, background=True))
    uvicorn.run(app, **options)
