"""Builders of core models for the storage tests: unique ids, every field set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from authgate.core.models import (
    AccessToken,
    ApiToken,
    App,
    AppSecret,
    AuditEvent,
    AuthorizationCode,
    Grant,
    RefreshToken,
    Resource,
    ScopeInfo,
    Session,
    SigningKey,
    User,
)

# Microseconds on purpose: they must survive the round trip.
T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
# The same instants written in another zone; the store must hand them back as UTC.
PLUS_TWO = timezone(timedelta(hours=2))


def uid(kind: str) -> str:
    return f"{kind}_{uuid.uuid4().hex}"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def user(**overrides: Any) -> User:
    name = uid("user")
    values: dict[str, Any] = {
        "id": uid("u"),
        "username": name,
        "email": f"{name}@example.test",
        "name": "Ada Lovelace",
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "is_admin": True,
        "disabled": False,
        "created_at": at(0).astimezone(PLUS_TWO),
        "updated_at": at(1),
    }
    return User(**(values | overrides))


def session(user_id: str, **overrides: Any) -> Session:
    values: dict[str, Any] = {
        "id": uid("s"),
        "user_id": user_id,
        "token_hash": uid("hash"),
        "created_at": at(0),
        "expires_at": at(60).astimezone(PLUS_TWO),
        "ip": "192.0.2.7",
        "user_agent": "Mozilla/5.0 (X11; Linux)",
    }
    return Session(**(values | overrides))


def api_token(user_id: str, **overrides: Any) -> ApiToken:
    values: dict[str, Any] = {
        "id": uid("pat"),
        "user_id": user_id,
        "name": "ci",
        "prefix": uid("pfx"),
        "token_hash": uid("hash"),
        "created_at": at(0),
        "expires_at": at(60 * 24),
        "last_used_at": None,
    }
    return ApiToken(**(values | overrides))


def app(**overrides: Any) -> App:
    values: dict[str, Any] = {
        "id": uid("app"),
        "name": "Claude",
        "icon": "https://example.test/icon.png",
        "redirect_uris": ("https://example.test/cb", "http://127.0.0.1/callback"),
        "client_type": "confidential",
        "require_pkce": True,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ("authorization_code", "refresh_token"),
        "scope": "openid profile",
        "first_party": False,
        "dynamically_registered": True,
        "created_at": at(0).astimezone(PLUS_TWO),
        "updated_at": at(2),
        "application_type": "native",
        "client_uri": "https://example.test/",
        "tos_uri": "https://example.test/tos",
        "policy_uri": "https://example.test/privacy",
        "contacts": ("ops@example.test", "Ada “security” <sec@example.test>"),
        "jwks": {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                    "kid": "k1",
                    "key_ops": ["verify"],
                }
            ]
        },
        "jwks_uri": "https://example.test/jwks.json",
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
        "software_version": "2.1.0",
        "registration_token_hash": uid("hash"),
        "metadata_document": False,
        "metadata_expires_at": None,
        "last_used_at": at(3).astimezone(PLUS_TWO),
    }
    return App(**(values | overrides))


def secret(app_id: str, **overrides: Any) -> AppSecret:
    values: dict[str, Any] = {
        "id": uid("sec"),
        "app_id": app_id,
        "prefix": uid("pfx"),
        "secret_hash": uid("hash"),
        "display_secret": "agcs_abc…xyz",
        "created_at": at(0),
        "last_used_at": None,
    }
    return AppSecret(**(values | overrides))


def code(app_id: str, user_id: str, **overrides: Any) -> AuthorizationCode:
    values: dict[str, Any] = {
        "id": uid("code"),
        "prefix": uid("pfx"),
        "code_hash": uid("hash"),
        "app_id": app_id,
        "user_id": user_id,
        "redirect_uri": "https://example.test/cb",
        "redirect_uri_provided": True,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "scope": "openid profile",
        "resource": "https://mcp.example.test/",
        "state_hash": uid("state"),
        "auth_time": at(-5).astimezone(PLUS_TWO),
        "created_at": at(0),
        "expires_at": at(1),
        "consumed_at": None,
        "grant_id": None,
    }
    return AuthorizationCode(**(values | overrides))


def grant(app_id: str, user_id: str | None, **overrides: Any) -> Grant:
    values: dict[str, Any] = {
        "id": uid("grant"),
        "app_id": app_id,
        "user_id": user_id,
        "resource": "https://mcp.example.test/",
        "scope": "openid profile",
        "auth_time": at(-5),
        "created_at": at(0).astimezone(PLUS_TWO),
        "revoked_at": None,
    }
    return Grant(**(values | overrides))


def access(g: Grant | None, app_id: str, **overrides: Any) -> AccessToken:
    values: dict[str, Any] = {
        "id": uid("at"),
        "prefix": uid("pfx"),
        "token_hash": uid("hash"),
        "grant_id": g.id if g else None,
        "app_id": app_id,
        "user_id": g.user_id if g else None,
        "secret_id": None,
        "audience": "https://mcp.example.test/",
        "scope": "openid profile",
        "created_at": at(0),
        "expires_at": at(60).astimezone(PLUS_TWO),
        "revoked_at": None,
    }
    return AccessToken(**(values | overrides))


def refresh(g: Grant, **overrides: Any) -> RefreshToken:
    values: dict[str, Any] = {
        "id": uid("rt"),
        "prefix": uid("pfx"),
        "token_hash": uid("hash"),
        "grant_id": g.id,
        "app_id": g.app_id,
        "user_id": g.user_id,
        "secret_id": None,
        "audience": "https://mcp.example.test/",
        "scope": "openid profile",
        "created_at": at(0),
        "expires_at": at(60 * 24 * 30),
        "consumed_at": None,
        "revoked_at": None,
    }
    return RefreshToken(**(values | overrides))


def event(**overrides: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "id": uid("ev"),
        "at": at(0),
        "action": "app.created",
        "actor_type": "user",
        "actor_id": "u1",
        "target_type": "app",
        "target_id": "a1",
        "ip": "198.51.100.4",
        "user_agent": "curl/8",
        "request_id": uid("req"),
        "details": {"name": "Claude", "redirect_uris": ["https://example.test/cb"], "n": 2},
    }
    return AuditEvent(**(values | overrides))


def resource(**overrides: Any) -> Resource:
    values: dict[str, Any] = {
        "id": uid("res"),
        "identifier": f"https://{uid('mcp')}.example.test/mcp",
        "name": "Files MCP",
        "scopes": (
            ScopeInfo(name="files:read", description="Read your files"),
            ScopeInfo(name="files:write", description="Change your files — even “quoted” ones"),
        ),
        "token_format": "jwt",
        "access_token_ttl": 900,
        "introspectors": (uid("app"), uid("app")),
        "created_at": at(0).astimezone(PLUS_TWO),
        "updated_at": at(1),
    }
    return Resource(**(values | overrides))


def signing_key(**overrides: Any) -> SigningKey:
    kid = uid("kid")
    values: dict[str, Any] = {
        "kid": kid,
        "alg": "ES256",
        "public_jwk": {
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
            "key_ops": ["verify"],
        },
        "private_key": "gAAAAABm-encrypted-pkcs8-blob==",
        "created_at": at(0).astimezone(PLUS_TWO),
        "activated_at": None,
        "retired_at": None,
        "expires_at": None,
    }
    return SigningKey(**(values | overrides))
