"""An MCP server protected by authgate: streamable HTTP, one tool (`whoami`).

Built with the official MCP Python SDK (`mcp` 2.x, the project's `mcp` extra), which serves the RFC 9728 document naming
authgate and asks authgate's resource-server kit whether each bearer token is good. In front of
it, the kit's `BearerAuth` answers every refusal, so the challenge names the scopes a client
needs (RFC 6750 §3) — on a 401 to choose what to ask for, on a 403 `insufficient_scope` to step
up:

    401  WWW-Authenticate: Bearer scope="mcp:tools", resource_metadata="…"
    403  WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="…"

Configuration (environment):

    AUTHGATE_ISSUER        authgate's issuer, e.g. http://localhost:3000 (byte-exact)
    MCP_RESOURCE           this server's canonical URL, e.g. http://127.0.0.1:8765/mcp
    MCP_HOST, MCP_PORT     where to listen [127.0.0.1, the port of MCP_RESOURCE]
    MCP_REQUIRED_SCOPES    space-separated scopes every request needs [mcp:tools]
    AUTHGATE_INTROSPECTION_CLIENT_ID / _SECRET
                           set both to check tokens by introspection (RFC 7662) instead of
                           verifying JWTs against authgate's JWKS; needed for opaque tokens
    MCP_INTROSPECTION_CACHE_SECONDS
                           how long an introspection answer may be reused (0-60) [30]

Run: `python examples/mcp_server/server.py`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer

from starlette.types import ASGIApp

from authgate.resource_server import Introspection, TokenVerifier
from authgate.resource_server.mcp import McpTokenVerifier, auth_settings, protect


def build_verifier(env: dict[str, str]) -> TokenVerifier:
    client_id = env.get("AUTHGATE_INTROSPECTION_CLIENT_ID")
    secret = env.get("AUTHGATE_INTROSPECTION_CLIENT_SECRET")
    introspection = None
    if client_id and secret:
        ttl = int(env.get("MCP_INTROSPECTION_CACHE_SECONDS", "30"))
        introspection = Introspection(client_id, secret, cache_ttl=ttl)
    return TokenVerifier(env["AUTHGATE_ISSUER"], env["MCP_RESOURCE"], introspection=introspection)


def caller(ctx: Context) -> AccessToken:
    """The access token of the HTTP request that carried this tool call.

    The request's own token, not a context variable: in a stateful session the tool runs in
    a task that may have been started by an earlier request (with an earlier token).
    """
    request = ctx.request_context.request
    user = getattr(request, "scope", {}).get("user")
    if isinstance(user, AuthenticatedUser):
        return user.access_token
    token = get_access_token()
    if token is None:
        raise RuntimeError("whoami needs an authenticated request")
    return token


def required_scopes(env: dict[str, str]) -> list[str]:
    return env.get("MCP_REQUIRED_SCOPES", "mcp:tools").split()


def build_server(env: dict[str, str], verifier: TokenVerifier) -> tuple[MCPServer, str]:
    scopes = required_scopes(env)
    server = MCPServer(
        "authgate-example",
        instructions="An example MCP server protected by authgate.",
        token_verifier=McpTokenVerifier(verifier),
        auth=auth_settings(verifier, scopes),
    )

    @server.tool()
    async def whoami(ctx: Context) -> dict[str, Any]:
        """Who is calling: the token's subject, client and scopes."""
        token = caller(ctx)
        return {
            "subject": token.subject,
            "client_id": token.client_id,
            "scopes": sorted(token.scopes),
            "resource": token.resource,
        }

    return server, urlsplit(verifier.resource).path or "/mcp"


def build_app(env: dict[str, str], verifier: TokenVerifier | None = None) -> ASGIApp:
    """The SDK's streamable HTTP app behind the kit's `BearerAuth` (`protect`): clients get the
    kit's refusals, a 503 rather than the SDK's 500 when authgate cannot be asked."""
    verifier = verifier or build_verifier(env)
    server, path = build_server(env, verifier)
    sdk = server.streamable_http_app(
        streamable_http_path=path, host=env.get("MCP_HOST", "127.0.0.1")
    )
    return protect(sdk, verifier, required_scopes(env))


def main() -> None:
    env = dict(os.environ)
    resource = urlsplit(env["MCP_RESOURCE"])
    default_port = resource.port or (443 if resource.scheme == "https" else 80)
    uvicorn.run(
        build_app(env),
        host=env.get("MCP_HOST", "127.0.0.1"),
        port=int(env.get("MCP_PORT", str(default_port))),
        log_level="info",
    )


if __name__ == "__main__":
    main()
