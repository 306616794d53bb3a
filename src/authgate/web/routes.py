"""The whole URL map on one screen."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from authgate import __version__
from authgate.config import Settings
from authgate.core import metadata as core_metadata
from authgate.core.context import Context
from authgate.core.settings import SettingsCache
from authgate.web import admin, health
from authgate.web.cors import with_cors
from authgate.web.errors import EXCEPTION_HANDLERS
from authgate.web.middleware import RequestContext
from authgate.web.pages import login
from authgate.web.protocol import (
    authorize,
    introspection,
    metadata,
    registration,
    token,
    user_tokens,
)


def protocol_routes(issuer: str) -> list[Route]:
    routes = [
        Route(path, with_cors(metadata.authorization_server), methods=["GET", "OPTIONS"])
        for path in core_metadata.well_known_paths(issuer)
    ]
    return [
        *routes,
        Route(
            "/.well-known/oauth-protected-resource",
            with_cors(metadata.protected_resource),
            methods=["GET", "OPTIONS"],
        ),
        Route("/.well-known/jwks.json", with_cors(metadata.jwks), methods=["GET", "OPTIONS"]),
        Route("/oauth2/authorize", authorize.authorize_get, methods=["GET"]),
        Route("/oauth2/authorize", authorize.authorize_post, methods=["POST"]),
        Route("/oauth2/tokens", with_cors(token.token_endpoint), methods=["POST", "OPTIONS"]),
        Route("/oauth2/token", with_cors(token.token_endpoint), methods=["POST", "OPTIONS"]),
        Route("/oauth2/tokens", user_tokens.withdraw_app_tokens, methods=["DELETE"]),
        Route("/oauth2/revoke", with_cors(introspection.revoke), methods=["POST", "OPTIONS"]),
        Route(
            "/oauth2/introspect", with_cors(introspection.introspect), methods=["POST", "OPTIONS"]
        ),
        Route("/oauth2/register", with_cors(registration.register), methods=["POST", "OPTIONS"]),
        Route(
            "/oauth2/clients/{client_id}",
            registration.client_configuration,  # CORS of its own: PUT and DELETE too
            methods=["GET", "PUT", "DELETE", "OPTIONS"],
        ),
    ]


def page_routes() -> list[Route]:
    return [
        Route("/", login.home, methods=["GET"]),
        Route("/login", login.login_get, methods=["GET"]),
        Route("/login", login.login_post, methods=["POST"]),
        Route("/logout", login.logout_get, methods=["GET"]),
        Route("/logout", login.logout_post, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
    ]


def build_app(ctx: Context, settings: Settings) -> FastAPI:
    app = FastAPI(
        title="authgate management API",
        version=__version__,
        openapi_url="/api/v2/openapi.json",
        docs_url=None,
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    app.state.ctx = ctx
    app.state.settings = settings
    # This node's copy of the runtime registration settings (core/settings.py).
    app.state.registration_settings = SettingsCache()
    app.router.routes.extend(protocol_routes(settings.issuer))
    app.router.routes.extend(page_routes())
    app.include_router(admin.router, prefix="/api/v2")
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(RequestContext)
    return app
