"""The whole URL map on one screen."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from authgate import __version__
from authgate.config import Settings
from authgate.core import metadata as core_metadata
from authgate.core.context import Context
from authgate.web import admin, health, metrics
from authgate.web.background import lifespan as background_lifespan
from authgate.web.cors import with_cors
from authgate.web.errors import EXCEPTION_HANDLERS
from authgate.web.fairness import FairShare
from authgate.web.flow_writer import FlowWriter
from authgate.web.hot import AuthgateApp
from authgate.web.middleware import RequestContext
from authgate.web.pages import (
    admin_access,
    admin_apps,
    admin_flows,
    admin_profiles,
    admin_system,
    admin_upstream,
    admin_users,
    api_reference,
    branding,
    connected,
    login,
    upstream,
)
from authgate.web.protocol import (
    authorize,
    introspection,
    metadata,
    registration,
    token,
    user_tokens,
    userinfo,
)
from authgate.web.templating import Branding, environment


def hot_routes(issuer: str) -> list[Route]:
    """The endpoints called on every connection and refresh; ``web/hot.py`` dispatches them
    before the router (which still lists them, for HEAD and the metrics' route labels)."""
    routes = [
        Route(path, with_cors(metadata.authorization_server), methods=["GET", "OPTIONS"])
        for path in core_metadata.well_known_paths(issuer)
    ] + [
        Route(path, with_cors(metadata.openid_configuration), methods=["GET", "OPTIONS"])
        for path in core_metadata.openid_paths(issuer)
    ]
    return [
        *routes,
        Route(
            "/.well-known/oauth-protected-resource",
            with_cors(metadata.protected_resource),
            methods=["GET", "OPTIONS"],
        ),
        Route("/.well-known/jwks.json", with_cors(metadata.jwks), methods=["GET", "OPTIONS"]),
        Route("/oauth2/tokens", with_cors(token.token_endpoint), methods=["POST", "OPTIONS"]),
        Route("/oauth2/token", with_cors(token.token_endpoint), methods=["POST", "OPTIONS"]),
        Route("/oauth2/revoke", with_cors(introspection.revoke), methods=["POST", "OPTIONS"]),
        Route(
            "/oauth2/introspect", with_cors(introspection.introspect), methods=["POST", "OPTIONS"]
        ),
    ]


def protocol_routes(issuer: str) -> list[Route]:
    return [
        *hot_routes(issuer),
        Route("/oauth2/authorize", authorize.authorize_get, methods=["GET"]),
        Route("/oauth2/authorize", authorize.authorize_post, methods=["POST"]),
        Route("/oauth2/tokens", user_tokens.withdraw_app_tokens, methods=["DELETE"]),
        # OIDC Core §5.3: CORS (without credentials), so a browser-based client can read it.
        Route(
            "/oauth2/userinfo",
            with_cors(userinfo.userinfo_endpoint),
            methods=["GET", "POST", "OPTIONS"],
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
        Route("/login/upstream/{provider}", upstream.start, methods=["POST"]),
        Route("/login/upstream/{provider}/callback", upstream.callback, methods=["GET"]),
        Route("/login/upstream/{provider}/jwks", upstream.jwks, methods=["GET"]),
        Route("/logout", login.logout_get, methods=["GET"]),
        Route("/logout", login.logout_post, methods=["POST"]),
        Route("/branding.css", branding.stylesheet, methods=["GET"]),
        Route("/api/v2/docs", api_reference.page, methods=["GET"]),
        Route("/account/apps", connected.connected_apps, methods=["GET"]),
        Route("/account/apps/disconnect", connected.disconnect, methods=["POST"]),
        *admin_routes(),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
    ]


def upstream_admin_routes() -> list[Route]:
    """The console's upstream identity providers."""
    one = "/admin/upstream/{provider_id}"
    return [
        Route("/admin/upstream", admin_upstream.list_providers, methods=["GET"]),
        Route("/admin/upstream", admin_upstream.create_provider, methods=["POST"]),
        Route(one, admin_upstream.show_provider, methods=["GET"]),
        Route(one, admin_upstream.update_provider, methods=["POST"]),
        Route(f"{one}/enable", admin_upstream.enable_provider, methods=["POST"]),
        Route(f"{one}/disable", admin_upstream.disable_provider, methods=["POST"]),
        Route(f"{one}/delete", admin_upstream.delete_provider, methods=["POST"]),
        Route(f"{one}/rotate-key", admin_upstream.rotate_key, methods=["POST"]),
        Route(f"{one}/certificate", admin_upstream.certificate, methods=["GET"]),
    ]


def admin_routes() -> list[Route]:
    """The admin console (pages for administrators; every POST carries the CSRF token)."""
    app = "/admin/apps/{app_id:path}"
    return [
        Route("/admin", admin_system.console, methods=["GET"]),
        Route("/admin/apps", admin_apps.list_apps, methods=["GET"]),
        Route("/admin/apps/new", admin_apps.new_app, methods=["GET"]),
        Route("/admin/apps/new", admin_apps.create_app, methods=["POST"]),
        Route(f"{app}/secrets/{{secret_id}}/delete", admin_apps.delete_secret, methods=["POST"]),
        Route(f"{app}/secrets", admin_apps.create_secret, methods=["POST"]),
        Route(f"{app}/delete", admin_apps.delete_app, methods=["POST"]),
        Route(f"{app}/access/grant", admin_access.grant_access, methods=["POST"]),
        Route(f"{app}/access/revoke", admin_access.revoke_access, methods=["POST"]),
        Route(app, admin_apps.show_app, methods=["GET"]),
        Route(app, admin_apps.update_app, methods=["POST"]),
        Route("/admin/users", admin_users.list_users, methods=["GET"]),
        Route("/admin/users", admin_users.create_user, methods=["POST"]),
        Route("/admin/users/{user_id}/disable", admin_users.disable_user, methods=["POST"]),
        Route("/admin/users/{user_id}/enable", admin_users.enable_user, methods=["POST"]),
        Route("/admin/users/{user_id}/password", admin_users.reset_password, methods=["POST"]),
        Route("/admin/users/{user_id}/email", admin_users.set_email_verified, methods=["POST"]),
        Route("/admin/users/{user_id}/delete", admin_users.delete_user, methods=["POST"]),
        Route("/admin/resources", admin_system.list_resources, methods=["GET"]),
        Route("/admin/resources", admin_system.create_resource, methods=["POST"]),
        Route("/admin/resources/{resource_id}", admin_system.show_resource, methods=["GET"]),
        Route("/admin/resources/{resource_id}", admin_system.update_resource, methods=["POST"]),
        Route(
            "/admin/resources/{resource_id}/delete",
            admin_system.delete_resource,
            methods=["POST"],
        ),
        Route("/admin/keys", admin_system.list_keys, methods=["GET"]),
        Route("/admin/keys/rotate", admin_system.rotate_keys, methods=["POST"]),
        Route("/admin/settings", admin_system.show_settings, methods=["GET"]),
        Route("/admin/settings", admin_system.update_settings, methods=["POST"]),
        Route("/admin/audit", admin_system.audit_log, methods=["GET"]),
        *upstream_admin_routes(),
        Route("/admin/flows", admin_flows.list_flows, methods=["GET"]),
        Route("/admin/flows/{flow_id}", admin_flows.show_flow, methods=["GET"]),
        Route("/admin/profiles", admin_profiles.list_profiles, methods=["GET"]),
        Route("/admin/profiles", admin_profiles.save_profile, methods=["POST"]),
        Route("/admin/profiles/{profile_id}/pin", admin_profiles.pin_profile, methods=["POST"]),
        Route(
            "/admin/profiles/{profile_id}/delete", admin_profiles.delete_profile, methods=["POST"]
        ),
        Route("/admin/test-client", admin_profiles.show_test_client, methods=["GET"]),
        Route("/admin/test-client", admin_profiles.test_client, methods=["POST"]),
    ]


def branding_of(settings: Settings) -> Branding:
    return Branding(
        name=settings.brand_name,
        logo_url=settings.brand_logo_url,
        accent=settings.brand_accent_color,
        support_url=settings.brand_support_url,
    )


def build_app(ctx: Context, settings: Settings, *, background: bool = False) -> AuthgateApp:
    """The ASGI app; ``background`` also runs the periodic cleanup (``web/background.py``)
    for as long as the app's lifespan lasts, which is what ``authgate serve`` wants."""
    app = AuthgateApp(
        lifespan=background_lifespan if background or settings.flows_enabled else None,
        title="authgate management API",
        version=__version__,
        openapi_url="/api/v2/openapi.json",
        docs_url=None,
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        # authgate has its own metrics; the framework's OpenTelemetry hooks would otherwise
        # look up the global tracer providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.background = background
    app.state.templates = environment(settings.template_dir or None)
    app.state.branding = branding_of(settings)
    app.router.routes.extend(protocol_routes(settings.issuer))
    app.router.routes.extend(page_routes())
    per_source = settings.http_in_flight_per_source
    share = (
        FairShare(per_source, refusal_delay=settings.http_refusal_delay_seconds)
        if per_source
        else None
    )
    if settings.metrics_enabled:
        # Not authenticated: operators keep /metrics off the public internet.
        app.state.metrics = metrics.Metrics(
            metrics.pool_gauge(ctx.store),
            metrics.fetch_refusals(ctx.fetcher),
            share.turns_waited if share else None,
            share.refusals_delayed if share else None,
        )
        app.router.routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    if settings.flows_enabled:
        observed = getattr(app.state, "metrics", None)
        app.state.flow_writer = writer = FlowWriter(
            ctx.store,
            on_written=observed.flow_steps_written(ctx) if observed else None,
            clock=ctx.clock,
        )
        if observed is not None:
            observed.watch_flow_writer(writer)
    app.include_router(admin.router, prefix="/api/v2")
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(RequestContext)  # the outermost of the app's own middleware
    app.serve_hot(hot_routes(settings.issuer))  # in front of all of it (web/hot.py)
    if share is not None:  # in front of everything (web/fairness.py)
        app.state.fair_share = share
        app.share_fairly(share, trust_proxy_headers=settings.trust_proxy_headers)
    return app
