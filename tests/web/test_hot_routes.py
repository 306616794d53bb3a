"""The hot protocol endpoints (``web/hot.py``) answer exactly as the router would: the same
bodies, headers, error handlers and metrics labels, and the discovery documents come from this
node's caches while they are fresh."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from authgate.app import Services
from authgate.core import keys, resources, token_endpoint
from authgate.core.context import SYSTEM
from authgate.core.models import ScopeInfo
from authgate.core.ports import StoreUnavailableError
from authgate.core.resources import ResourceFields
from authgate.web.hot import HotRoutes
from authgate.web.protocol.metadata import Rendered
from tests.clock import MovableClock
from tests.conftest import ISSUER, Client
from tests.web.test_metrics import scrape, value

JWKS = "/.well-known/jwks.json"
METADATA = "/.well-known/oauth-authorization-server"


def _basic(app: Client) -> dict[str, str]:
    raw = f"{app.id}:{app.secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def test_token_error_carries_every_header_and_is_counted(
    client: TestClient, confidential: Client
) -> None:
    resp = client.post(
        "/oauth2/token", data={"grant_type": "password"}, headers=_basic(confidential)
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "unsupported_grant_type",
        "error_description": resp.json()["error_description"],
    }
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["pragma"] == "no-cache"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert len(resp.headers["x-request-id"]) >= 16
    samples = scrape(client)
    labels = {"route": "/oauth2/token", "method": "POST", "status": "400"}
    assert value(samples, "authgate_http_requests_total", **labels) == 1
    errors = {"endpoint": "/oauth2/token", "error": "unsupported_grant_type"}
    assert value(samples, "authgate_oauth_errors_total", **errors) == 1


def test_preflight_is_answered_on_the_hot_path(client: TestClient) -> None:
    resp = client.options("/oauth2/introspect", headers={"Origin": "https://app.example"})
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert "Authorization" in resp.headers["access-control-allow-headers"]
    assert resp.content == b""


def test_head_and_unknown_methods_still_reach_the_router(client: TestClient) -> None:
    head = client.head(JWKS)
    assert head.status_code == 200 and head.content == b""
    assert client.put(JWKS).status_code == 405
    assert client.get("/oauth2/token").status_code == 405


def test_store_outage_gets_the_503_handler(
    client: TestClient, confidential: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: Any, **__: Any) -> None:
        raise StoreUnavailableError("database is down")

    monkeypatch.setattr(token_endpoint, "exchange", down)
    resp = client.post(
        "/oauth2/tokens",
        data={"grant_type": "client_credentials"},
        headers=_basic(confidential),
    )
    assert resp.status_code == 503
    assert resp.json()["error"] == "temporarily_unavailable"
    assert resp.headers["retry-after"] == "5"
    assert "database is down" not in resp.text


def test_unexpected_exception_is_a_bare_500_under_the_request_id(
    client: TestClient, confidential: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(token_endpoint, "exchange", broken)
    resp = client.post(
        "/oauth2/tokens",
        data={"grant_type": "client_credentials"},
        headers={**_basic(confidential), "X-Request-Id": "req-hot-500"},
    )
    assert resp.status_code == 500
    assert resp.json()["error"] == "server_error"
    assert "internal detail" not in resp.text
    assert resp.headers["x-request-id"] == "req-hot-500"


def test_discovery_documents_come_from_the_cache_while_it_is_fresh(
    client: TestClient, services: Services, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_jwks, first_metadata = client.get(JWKS).json(), client.get(METADATA).json()
    assert first_jwks["keys"] and first_metadata["issuer"] == ISSUER

    def down(*_: Any, **__: Any) -> None:
        raise StoreUnavailableError("database is down")

    store = services.store
    monkeypatch.setattr(store, "list_signing_keys", down)
    monkeypatch.setattr(store, "list_resources", down)
    monkeypatch.setattr(store, "get_setting", down)
    assert client.get(JWKS).json() == first_jwks
    assert client.get(METADATA).json() == first_metadata

    # Past the cache's lifetime the documents are read again, here from a database that is down.
    clock.advance(seconds=services.ctx.policy.cache_ttl.total_seconds() + 1)
    resp = client.get(JWKS)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert client.get(METADATA).status_code == 503


def test_root_path_and_parameterised_paths_are_left_to_the_router() -> None:
    async def endpoint(*_: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(ValueError, match="fixed path"):
        HotRoutes(endpoint, routes=[Route("/oauth2/clients/{client_id}", endpoint)])

    seen: list[str] = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])

    hot = HotRoutes(fallback, routes=[Route("/x", endpoint, methods=["POST"])])
    scope = {"type": "http", "method": "POST", "path": "/x", "root_path": "/prefix"}
    asyncio.run(hot(scope, _no_receive, _no_send))
    assert seen == ["/x"]


def test_the_event_loop_never_waits_for_a_key_refresh(
    client: TestClient, services: Services
) -> None:
    """A refresh holds the keyring's lock across database reads: the cached path must not wait
    for it (the endpoint then takes the worker-thread path)."""
    first = client.get(JWKS).json()
    with services.ctx.caches.keyring._lock:
        assert keys.cached_jwks(services.ctx) is None
    assert keys.cached_jwks(services.ctx) == first


def test_hot_requests_skip_the_framework_stack(client: TestClient) -> None:
    """Hot paths are answered in front of the framework's middleware and router; anything
    else (here HEAD on the same path) still goes through them."""
    assert client.get("/healthz").status_code == 200  # the framework builds its stack
    app: Any = client.app
    through: list[str] = []
    stack = app.middleware_stack

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        through.append(f"{scope['method']} {scope['path']}")
        await stack(scope, receive, send)

    app.middleware_stack = counting
    resp = client.get(JWKS, headers={"X-Request-Id": "req-hot-front"})
    assert resp.status_code == 200 and resp.json()["keys"]
    assert resp.headers["x-request-id"] == "req-hot-front"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert through == []
    assert client.head(JWKS).status_code == 200
    assert through == [f"HEAD {JWKS}"]


def test_a_rendered_body_is_reused_only_while_its_inputs_are_equal() -> None:
    rendered = Rendered()
    built: list[object] = []

    def build(document: dict[str, Any]) -> Any:
        def make() -> dict[str, Any]:
            built.append(document)
            return document

        return make

    first = rendered.body(("a", ["x"]), build({"k": "é", "n": [1, 2]}))
    assert first == '{"k":"é","n":[1,2]}'.encode()  # as JSONResponse renders it
    assert rendered.body(("a", ["x"]), build({"k": "other"})) is first
    assert len(built) == 1
    assert rendered.body(("a", ["y"]), build({"k": "other"})) == b'{"k":"other"}'
    assert len(built) == 2


def test_discovery_documents_follow_key_rotation_and_new_scopes(
    client: TestClient, services: Services, clock: MovableClock
) -> None:
    before_keys = {k["kid"] for k in client.get(JWKS).json()["keys"]}
    before_scopes = client.get(METADATA).json()["scopes_supported"]
    ctx = services.ctx
    keys.rotate(ctx, SYSTEM)
    own = resources.lookup(ctx, ctx.policy.audience)
    assert own is not None
    more = (*own.scopes, ScopeInfo("files:read", "Read your files"))
    resources.update_resource(ctx, SYSTEM, own.id, ResourceFields(scopes=more))
    clock.advance(seconds=ctx.policy.cache_ttl.total_seconds() + 1)
    after_keys = {k["kid"] for k in client.get(JWKS).json()["keys"]}
    assert before_keys < after_keys
    after_scopes = client.get(METADATA).json()["scopes_supported"]
    assert "files:read" in after_scopes and "files:read" not in before_scopes


async def _no_receive() -> Message:  # pragma: no cover - never called
    raise AssertionError


async def _no_send(message: Message) -> None:  # pragma: no cover - never called
    raise AssertionError
