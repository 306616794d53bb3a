"""Composition root: the only place where settings, storage, core and web meet (the services
come from ``services.py``, the ASGI app from ``web.routes``)."""

from __future__ import annotations

from fastapi import FastAPI

from authgate.config import Settings
from authgate.services import (
    ConfigurationError,
    Services,
    build_services,
    check_schema,
    dev_secret_key,
    fetcher_from,
    migrate_for_dev,
    policy_from,
    schema_status,
    secret_key_bytes,
    warm_up,
)
from authgate.web.routes import build_app

# What tests and scripts import from here: the services and the app in one place.
__all__ = [
    "ConfigurationError",
    "Services",
    "build_services",
    "check_schema",
    "create_app",
    "dev_secret_key",
    "fetcher_from",
    "migrate_for_dev",
    "policy_from",
    "secret_key_bytes",
    "warm_up",
]


def create_app(
    settings: Settings,
    *,
    dev: bool = False,
    services: Services | None = None,
    background: bool = False,
) -> FastAPI:
    """The ASGI app; ``background`` runs the periodic cleanup while it serves."""
    services = services or build_services(settings, dev=dev)
    app = build_app(services.ctx, settings, background=background)
    # /readyz asks this (web may not import storage): is the schema the one this code needs?
    app.state.schema_current = lambda: schema_status(settings).state == "up_to_date"
    return app
