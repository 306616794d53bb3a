"""How failures reach HTTP: request ids, no detail on 500, 503 when the database is away."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from authgate.core import token_endpoint
from authgate.core.ports import StoreUnavailableError
from tests.flows import assert_oauth_error, csrf_from


def test_every_response_has_a_request_id(client: TestClient) -> None:
    resp = client.get("/.well-known/oauth-authorization-server")
    assert len(resp.headers["x-request-id"]) == 36
    echoed = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = client.get("/healthz", headers={"X-Request-Id": "<script>" * 20})
    assert hostile.headers["x-request-id"] != "<script>" * 20


def test_unexpected_error_is_a_bare_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("internal detail: db password is hunter2")

    monkeypatch.setattr(token_endpoint, "exchange", boom)
    app = client.app
    with (
        TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c,
        caplog.at_level(logging.ERROR, logger="authgate.errors"),
    ):
        resp = c.post("/oauth2/tokens", data={"grant_type": "authorization_code"})
    body = assert_oauth_error(resp, 500, "server_error")
    assert "hunter2" not in resp.text and "internal detail" not in body["error_description"]
    rid = resp.headers["x-request-id"]
    assert any(rid in r.getMessage() for r in caplog.records)


def test_database_unavailable_is_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: object) -> None:
        raise StoreUnavailableError("connection refused")

    monkeypatch.setattr(token_endpoint, "exchange", down)
    with TestClient(client.app, base_url="http://testserver", raise_server_exceptions=False) as c:
        resp = c.post("/oauth2/tokens", data={"grant_type": "authorization_code"})
    assert_oauth_error(resp, 503, "temporarily_unavailable")


def test_oversize_body_is_refused_before_parsing(client: TestClient) -> None:
    resp = client.post(
        "/oauth2/tokens",
        content=b"a=" + b"x" * (1024 * 1024 + 10),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "invalid_request"


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_json_logs_carry_the_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from authgate.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("authgate")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        resp = client.post(
            "/oauth2/tokens",
            data={"grant_type": "refresh_token", "refresh_token": "agrt_x", "client_id": "x"},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    rid = resp.headers["x-request-id"]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines, "no log lines"
    assert all(line.get("request_id") == rid for line in lines)
    access = [line for line in lines if line.get("path") == "/oauth2/tokens"]
    assert access and access[0]["status"] == 401
    assert "agrt_x" not in json.dumps(lines)


def test_forwarded_address_is_the_one_the_proxy_appended(settings: Any, services: Any) -> None:
    from authgate.app import create_app
    from authgate.core.models import AuditQuery

    trusting = settings.model_copy(update={"trust_proxy_headers": True})
    with TestClient(create_app(trusting, services=services), base_url="http://testserver") as c:
        # The client forged the first entry; the proxy appended the address it saw.
        token = csrf_from(c.get("/login"))
        resp = c.post(
            "/login",
            data={"username": "nobody", "password": "wrong password", "csrf_token": token},
            headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7"},
        )
        assert resp.status_code == 401
    events, _ = services.store.list_audit(AuditQuery(action="user.login_failed"))
    assert [e.ip for e in events] == ["198.51.100.7"]


def test_readyz_fails_on_a_schema_this_code_does_not_know(
    client: TestClient, services: Any
) -> None:
    import sqlalchemy as sa

    assert client.get("/readyz").status_code == 200
    with services.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unavailable" and body["failed"] == ["schema"]
