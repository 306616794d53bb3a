"""Settings: every option, its safe default and its documentation (env prefix ``AUTHGATE_``).

docs/configuration.md is generated from this module (``authgate settings --markdown``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTHGATE_", extra="ignore")

    issuer: str = Field(
        "http://localhost:3000",
        description="The issuer URL: how clients reach authgate, byte-identical in metadata, "
        "`iss` and tokens. Use https in production; no trailing slash unless you mean it.",
    )
    data_dir: Path = Field(
        Path("./data"),
        description="Directory for the embedded SQLite database and the generated dev secret key.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy-style URL: `sqlite:///path/authgate.db` or "
        "`postgresql://user:pass@host/db`. Empty means SQLite in the data directory.",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="SQLite only: `full` syncs every commit to disk, so a code redeemed or a "
        "refresh token rotated stays spent after a power loss or OS crash; `normal` skips that "
        "sync (faster writes; the last commits can roll back after a power loss, never after a "
        "process crash).",
    )
    secret_key: str = Field(
        "",
        description="Server secret (32+ characters) for CSRF tokens and key encryption. "
        "Required unless `--dev`, which generates one in the data directory.",
    )
    host: str = Field("127.0.0.1", description="Address `authgate serve` listens on.")
    port: int = Field(3000, description="Port `authgate serve` listens on.")
    code_ttl_seconds: int = Field(
        600, ge=10, le=600, description="Authorization code lifetime (at most 10 minutes)."
    )
    access_token_ttl_seconds: int = Field(
        3600, ge=60, le=86400, description="Access token lifetime."
    )
    refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=300, description="Refresh token lifetime (each rotation starts anew)."
    )
    refresh_reuse_grace_seconds: int = Field(
        120,
        ge=0,
        le=600,
        description="A used refresh token presented again within this many seconds of its "
        "rotation, by the same client (and, if confidential, with the same secret), gets the "
        "family's current refresh token again with a new access token: retries and several "
        "processes sharing one credential store stay signed in, and the family never forks. "
        "After it (or by another client or secret), reuse revokes the whole family. 0 = strict.",
    )
    signing_alg: Literal["ES256", "RS256", "EdDSA"] = Field(
        "ES256", description="JWS algorithm of new signing keys (JWT access tokens)."
    )
    key_rotation_days: int = Field(
        30,
        ge=0,
        description="Rotate the signing key automatically after this many days (0 = only by "
        "hand with `authgate keys rotate`). The next key is published a day before it signs.",
    )
    session_ttl_seconds: int = Field(12 * 3600, ge=300, description="Browser session lifetime.")
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    trust_proxy_headers: bool = Field(
        False,
        description="Take the client address from X-Forwarded-For: its last entry, the one the "
        "trusted proxy in front of authgate appended (only behind exactly one such proxy).",
    )

    client_metadata_documents: bool = Field(
        True,
        description="Accept an https URL as `client_id` (Client ID Metadata Documents, as MCP "
        "clients use): authgate fetches and validates the client's own metadata document, "
        "SSRF-safe, and caches it. Also needed for clients whose keys are at a `jwks_uri`. "
        "This is the hard off switch (nothing is fetched); the operator's runtime switch, "
        "document-host lists and cap are runtime settings (`authgate registration set`, "
        "`/api/v2/oauth2-provider/settings`).",
    )
    fetch_allow_hosts: str = Field(
        "",
        description="Comma-separated host names, IP addresses or CIDR networks that metadata "
        "documents and `jwks_uri` may be fetched from although they are not public (loopback, "
        "private networks). For development and tests only; empty in production.",
    )
    fetch_ca_bundle: str = Field(
        "",
        description="PEM file of the CAs trusted for those fetches (e.g. a private or test CA). "
        "Empty means the system trust store.",
    )
    fetch_connect_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Connect timeout of a metadata-document or jwks_uri fetch."
    )
    fetch_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Overall deadline of a metadata-document or jwks_uri fetch, connect included.",
    )
    fetch_max_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest metadata document or JWK Set fetched; a larger one is refused.",
    )
    fetch_threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Threads per server process that fetch metadata documents and `jwks_uri` "
        "key sets, apart from the threads that serve requests. A fetch is admitted only while "
        "one is free (there is no queue); otherwise the request is refused at once with "
        '`invalid_client` ("could not be fetched now"), and a client whose document is '
        "stored keeps being served from it. Keep it below `AUTHGATE_PROTOCOL_THREADS`: a "
        "request waiting on a fetch holds one of those.",
    )
    fetch_per_host: int = Field(
        2,
        ge=1,
        le=64,
        description="Fetches of one host in flight at once per server process (a host that "
        "never answers holds at most this many fetch threads, whatever URLs on it are named).",
    )
    fetch_per_source: int = Field(
        2,
        ge=1,
        le=64,
        description="Fetches in flight at once per server process asked by one source network "
        "(an IPv4 address, an IPv6 /64), so that one source cannot take every fetch thread.",
    )
    upstream_providers: str = Field(
        "",
        description="Upstream providers people may sign in through (OpenID Providers, and "
        "GitHub with `kind` `github`), as a JSON list of objects (`id`, `display_name`, `kind`, "
        "`issuer`, `client_id`, `client_secret`, `scopes`, "
        "`allowed_domains`, `link_by_verified_email`, `jit_create`, `required_claim`, "
        "`required_values`, `admin_claim`, `admin_values`, `enabled`, `token_auth_method`, "
        "`assertion_audience`; docs/upstream-sign-in.md). "
        "Applied when `authgate serve` starts: missing providers are created and differing ones "
        "updated (audited); providers not named are left as the API or CLI set them. Their "
        "back-channel requests use the fetcher's rules (`AUTHGATE_FETCH_*`). Empty: none.",
    )
    password_sign_in: bool = Field(
        True,
        description="Show the username and password form on the sign-in page and accept it. "
        "Switch it off when everyone signs in through an upstream provider.",
    )

    registration_rate_per_ip: int = Field(
        10,
        ge=0,
        description="Dynamic client registrations (`POST /oauth2/register`) allowed per source "
        "address per hour; more answer 429 with `Retry-After`. 0 = no limit. The same number "
        "of first loads of metadata documents not stored yet (a new `client_id` URL at the "
        "authorization or token endpoint) is allowed per address per hour, counted apart. "
        "Whether registration and metadata documents are on, and their other limits, are "
        "runtime settings: `authgate registration` or `/api/v2/oauth2-provider/settings`.",
    )
    registration_rate_global: int = Field(
        100,
        ge=0,
        description="Dynamic client registrations allowed per hour from all addresses "
        "together (shared by every node through the database); likewise first loads of "
        "metadata documents, counted apart. 0 = no limit.",
    )

    sign_in_rate_per_ip: int = Field(
        20,
        ge=0,
        description="Sign-in attempts (`POST /login`) allowed per source per minute; more "
        "answer 429 with `Retry-After`. A source is an IPv4 address or an IPv6 /64 (here and "
        "in every per-address limit: token, introspection, registration). 0 = no limit.",
    )
    sign_in_attempts_per_user: int = Field(
        5,
        ge=0,
        description="Sign-in slow-down per username and source: after this many password "
        "checks for one username from one source in a minute, that username answers 429 to "
        "that source until the minute ends; twice as many in 5 minutes hold it until those "
        "end, three times as many in 15 minutes until those end (the cap). The user signing "
        "in from another source is not held. Nothing else locks an account. 0 = no slow-down.",
    )
    sign_in_sources_per_user: int = Field(
        20,
        ge=0,
        le=100_000,
        description="How many sources may be slowed down for one username (by "
        "`AUTHGATE_SIGN_IN_ATTEMPTS_PER_USER`) in 15 minutes before that username answers "
        "429 from every source until the 15 minutes end: the cap on guessing spread over "
        "many networks. Holding it takes this many sources, each slowed down first. "
        "0 = no such cap.",
    )
    password_hash_concurrency: int = Field(
        0,
        ge=0,
        le=64,
        description="Password checks (Argon2id, 64 MiB each) run at once per server process, "
        "at the lowest CPU priority. 0 = one fewer than the CPU cores the process may run on "
        "(at least one), so that a flood of sign-ins never takes every core from the other "
        "requests.",
    )
    password_hash_queue: int = Field(
        8,
        ge=0,
        le=1024,
        description="Password checks that may wait for one of those per server process; a "
        "sign-in beyond them is refused at once (429 with `Retry-After`) instead of holding a "
        "request thread, so a flood of sign-ins cannot delay the other pages and endpoints.",
    )
    token_rate_per_client: int = Field(
        600,
        ge=0,
        description="Token requests (`POST /oauth2/tokens`) allowed per minute per `client_id` "
        "(per source address when the request names no client); more answer 429 "
        "`temporarily_unavailable` with `Retry-After`. 0 = no limit.",
    )
    introspection_rate_per_client: int = Field(
        1200,
        ge=0,
        description="Introspection requests (`POST /oauth2/introspect`) allowed per minute per "
        "client (per source address when none is named). 0 = no limit.",
    )
    cleanup_interval_seconds: int = Field(
        300,
        ge=0,
        description="How often each `authgate serve` process deletes expired sessions, codes, "
        "tokens and spent grants, and purges unused self-registered clients (in batches; "
        "several nodes may clean at once). 0 = never (run `authgate db cleanup` from cron "
        "instead).",
    )
    cleanup_retention_seconds: int = Field(
        86400,
        ge=0,
        description="How long an expired row is kept before the cleanup deletes it (for "
        "forensics and the replay checks on spent codes and rotated refresh tokens).",
    )
    cleanup_batch_size: int = Field(
        500,
        ge=1,
        le=10000,
        description="Rows deleted per cleanup transaction; small batches keep locks short.",
    )
    flows_enabled: bool = Field(
        True,
        description="Record the timeline of every authorization flow (steps, outcomes and "
        "the reason code of each refusal; docs/flow-reasons.md) for operators: the admin "
        "console's Flows page, `GET /api/v2/flows`, `authgate flows`. Steps are written in "
        "batches off the request path; false records nothing.",
    )
    flow_retention_seconds: int = Field(
        604800,
        ge=3600,
        description="How long the steps of a flow are kept; the background cleanup deletes "
        "older ones (and flows without steps).",
    )
    flow_max_steps: int = Field(
        1_000_000,
        ge=1000,
        description="At most this many flow steps are kept: the background cleanup deletes "
        "the oldest beyond it, whatever their age.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes `authgate serve` starts on the one port (each with its "
        "own database pool). About one per CPU core.",
    )
    protocol_threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Worker threads per server process for the token, introspection, "
        "revocation and discovery endpoints. Their work is mostly CPU-bound, so a few threads "
        "give the best latency; raise it when the database is far away (each waiting "
        "request holds a thread).",
    )
    shutdown_grace_seconds: int = Field(
        20,
        ge=0,
        description="On SIGTERM or SIGINT the server stops accepting connections, lets the "
        "requests in flight finish for up to this long, then exits.",
    )
    http_max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line plus headers `authgate serve` reads; a larger one is "
        "answered 431 and its connection closed, after at most this many bytes and one read.",
    )
    http_request_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=600,
        description="Time a client has to send a whole request (line, headers and body) from "
        "its first byte, or from opening the connection; a slower one is answered 408 and "
        "closed (a slowloris holds nothing longer), a connection that sent nothing is closed. "
        "The time authgate takes to answer is not counted.",
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Open connections each server process serves at once; a request on a "
        "connection beyond them is answered 503 `temporarily_unavailable` with `Retry-After` "
        "and closed. Per process (`AUTHGATE_WORKERS` multiplies it); keep it under the "
        "process's file-descriptor limit.",
    )
    http_in_flight_per_source: int = Field(
        4,
        ge=0,
        le=100_000,
        description="Requests of one source (an IPv4 address, an IPv6 /64) in progress at once "
        "in each server process while other sources are active too; its further requests wait "
        "their turn, in order, without a thread, so one address's flood does not queue every "
        "other client behind it. A source alone on the server is not held back. 0 turns this "
        "off. Behind a proxy, set `AUTHGATE_TRUST_PROXY_HEADERS` or every request is one source.",
    )
    http_refusal_delay_seconds: float = Field(
        1.0,
        ge=0,
        le=30,
        description="While other sources are active, a 429 answer (a rate limit, a full fetch "
        "pool or hashing queue) waits this long before it is sent, in its source's turn "
        "(`AUTHGATE_HTTP_IN_FLIGHT_PER_SOURCE`), without a thread: a source refused in a loop "
        "gets at most that many answers per delay, and the processor goes to the other "
        "clients. A source alone on the server is answered at once. 0 turns this off; so does "
        "`AUTHGATE_HTTP_IN_FLIGHT_PER_SOURCE=0`.",
    )
    metrics_enabled: bool = Field(
        True,
        description="Serve Prometheus metrics at `/metrics`. The endpoint is not authenticated: "
        "do not expose it publicly (block it at the proxy, scrape it from inside).",
    )

    brand_name: str = Field(
        "authgate",
        min_length=1,
        max_length=64,
        description="Product name shown in the header and title of every page.",
    )
    brand_logo_url: str = Field(
        "",
        description="Logo shown beside the product name: an https URL or a local path "
        "(`/static/…`). Empty shows the name only.",
    )
    brand_accent_color: str = Field(
        "#2457d6",
        description="Accent colour of buttons and links, `#rrggbb`. Button text is black or "
        "white, whichever contrasts more.",
    )
    brand_support_url: str = Field(
        "",
        description="Where people get help (https URL or `mailto:`), linked from every page "
        "and from the error page next to the request id. Empty hides the link.",
    )
    template_dir: str = Field(
        "",
        description="Directory of Jinja2 templates that override the built-in pages by file "
        "name (`login.html`, `consent.html`, `base.html`, …; the built-in ones stay reachable "
        'as `authgate/<name>`, e.g. `{% extends "authgate/base.html" %}`). Each is read once '
        "per server process: restart after editing them. Empty = built-in.",
    )

    @field_validator("brand_accent_color")
    @classmethod
    def _accent_is_hex(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("brand_accent_color must be #rrggbb")
        return value.lower()

    @field_validator("brand_logo_url")
    @classmethod
    def _logo_is_safe(cls, value: str) -> str:
        local = value.startswith("/") and not value.startswith("//")
        if value and not (value.startswith("https://") or local):
            raise ValueError("brand_logo_url must be an https URL or a local path")
        return value

    @field_validator("brand_support_url")
    @classmethod
    def _support_is_safe(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://", "mailto:")):
            raise ValueError("brand_support_url must be an http(s) or mailto: URL")
        return value

    @field_validator("template_dir")
    @classmethod
    def _template_dir_exists(cls, value: str) -> str:
        if value and not Path(value).is_dir():
            raise ValueError(f"template_dir is not a directory: {value}")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("issuer must be an http(s) URL without query or fragment")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'authgate.db'}"

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")


def settings_markdown() -> str:
    """The configuration reference, generated from the fields above."""
    lines = [
        "# Configuration",
        "",
        "Every option is an environment variable with the prefix `AUTHGATE_`. "
        "This page is generated by `authgate settings --markdown`; do not edit it by hand.",
        "",
        "| Variable | Default | Description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        lines.append(f"| `AUTHGATE_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(lines) + "\n"
