"""The services one authgate process runs with: settings, storage, core and the fetcher put
together into a ``Context``. The CLI's commands need nothing more; ``app.py`` adds the web
application on top, so that printing an app list does not load the web framework."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from authgate import storage
from authgate.config import Settings
from authgate.core import keys, resources
from authgate.core.caches import Caches
from authgate.core.context import SYSTEM, Context
from authgate.core.errors import ValidationFailed
from authgate.core.policy import Policy, SystemClock
from authgate.core.ports import Clock
from authgate.core.resources import canonical_resource
from authgate.core.upstream import providers as upstream_providers
from authgate.core.upstream.providers import ProviderSpec
from authgate.crypto import passwords
from authgate.fetch import AllowList, FetchPool, HttpsFetcher, UpstreamClient
from authgate.storage import SqlStore


class ConfigurationError(Exception):
    """authgate cannot start with these settings; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: SqlStore
    ctx: Context


def policy_from(settings: Settings) -> Policy:
    return Policy(
        issuer=settings.issuer,
        code_ttl=timedelta(seconds=settings.code_ttl_seconds),
        access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        refresh_reuse_grace=timedelta(seconds=settings.refresh_reuse_grace_seconds),
        session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        default_audience=canonical_resource(settings.issuer),
        signing_alg=settings.signing_alg,
        key_rotation_interval=timedelta(days=settings.key_rotation_days),
        document_loads_per_ip=settings.registration_rate_per_ip,
        document_loads_overall=settings.registration_rate_global,
    )


def _https_fetcher(settings: Settings) -> HttpsFetcher:
    if settings.fetch_ca_bundle and not Path(settings.fetch_ca_bundle).is_file():
        raise ConfigurationError(
            f"AUTHGATE_FETCH_CA_BUNDLE names no file: {settings.fetch_ca_bundle}"
        )
    try:
        allow = AllowList.parse(settings.fetch_allow_hosts.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"AUTHGATE_FETCH_ALLOW_HOSTS: {exc}") from exc
    return HttpsFetcher(
        allow=allow,
        ca_bundle=settings.fetch_ca_bundle or None,
        connect_timeout=settings.fetch_connect_timeout_seconds,
        total_timeout=settings.fetch_timeout_seconds,
        max_bytes=settings.fetch_max_bytes,
    )


def fetcher_from(settings: Settings) -> FetchPool | None:
    """The SSRF-safe fetcher for metadata documents and jwks_uri, or None when switched off."""
    if not settings.client_metadata_documents:
        return None
    fetcher = _https_fetcher(settings)
    return FetchPool(
        fetcher,
        threads=settings.fetch_threads,
        per_host=settings.fetch_per_host,
        per_source=settings.fetch_per_source,
    )


#: At least this many back-channel requests to upstream providers at once per process.
UPSTREAM_THREADS = 8


def upstream_client_from(settings: Settings) -> UpstreamClient:
    """The back channel to upstream OpenID Providers: the same SSRF-safe fetcher and address
    rules (AUTHGATE_FETCH_*), on a bounded pool of its own, so that a provider that is down
    never takes the threads of client documents, nor the reverse."""
    fetcher = _https_fetcher(settings)
    # Everyone signing in talks to the same few providers: no cap per host below the pool's
    # own size (a client document's host is a stranger's choice; a provider is the operator's).
    threads = max(settings.fetch_threads, UPSTREAM_THREADS)
    pool = FetchPool(fetcher, threads=threads, per_host=threads, per_source=threads)
    return UpstreamClient(fetcher, pool)


def upstream_specs(settings: Settings) -> list[ProviderSpec]:
    """AUTHGATE_UPSTREAM_PROVIDERS: a JSON list of provider objects (docs/upstream-sign-in.md)."""
    if not settings.upstream_providers.strip():
        return []
    try:
        entries = json.loads(settings.upstream_providers)
        if not isinstance(entries, list):
            raise TypeError("not a JSON list")
        return [_spec(entry) for entry in entries]
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"AUTHGATE_UPSTREAM_PROVIDERS: {exc}") from exc


def _spec(entry: object) -> ProviderSpec:
    if not isinstance(entry, dict):
        raise TypeError("each provider is a JSON object")
    values = dict(entry)
    for name in ("allowed_domains", "required_values", "admin_values"):
        if name in values:
            values[name] = tuple(values[name])
    return ProviderSpec(**values)


def apply_upstream_configuration(services: Services) -> list[str]:
    """Create or update the providers AUTHGATE_UPSTREAM_PROVIDERS names (idempotent)."""
    specs = upstream_specs(services.settings)
    try:
        return upstream_providers.apply_configuration(services.ctx, SYSTEM, specs)
    except ValidationFailed as exc:
        raise ConfigurationError(f"AUTHGATE_UPSTREAM_PROVIDERS: {exc} {exc.validations}") from exc


def dev_secret_key(settings: Settings) -> str:
    """Read, or create once, the development secret key kept in the data directory."""
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def secret_key_bytes(settings: Settings, *, dev: bool) -> bytes:
    key = settings.secret_key or (dev_secret_key(settings) if dev else "")
    if len(key) < 32:
        raise ConfigurationError(
            "AUTHGATE_SECRET_KEY must be set to at least 32 characters "
            "(or run `authgate serve --dev`, which generates one in the data directory)"
        )
    return hashlib.sha256(b"authgate-secret-key:" + key.encode()).digest()


def schema_status(settings: Settings) -> storage.SchemaStatus:
    try:
        return storage.schema_status(settings.resolved_database_url)
    except ValueError as exc:
        raise ConfigurationError(f"AUTHGATE_DATABASE_URL is not usable: {exc}") from exc


def migrate_for_dev(settings: Settings) -> None:
    """Development mode migrates by itself, but never touches a schema newer than the code."""
    if schema_status(settings).state in ("uninitialised", "behind"):
        storage.upgrade(settings.resolved_database_url)


def check_schema(settings: Settings) -> None:
    status = schema_status(settings)
    if status.state == "uninitialised":
        raise ConfigurationError("The database is not migrated: run `authgate db upgrade` first")
    if status.state == "behind":
        raise ConfigurationError(
            f"The database schema is at {status.current}, this authgate needs {status.head}: "
            "run `authgate db upgrade`"
        )
    if status.state == "ahead":
        raise ConfigurationError(
            f"The database schema ({status.current}) is newer than this authgate "
            f"({status.head}): upgrade authgate or point it at another database"
        )


def build_services(
    settings: Settings, *, dev: bool = False, clock: Clock | None = None
) -> Services:
    key = secret_key_bytes(settings, dev=dev)
    passwords.configure(settings.password_hash_concurrency, settings.password_hash_queue)
    store = storage.open_store(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    ctx = Context(
        store=store,
        clock=clock or SystemClock(),
        policy=policy_from(settings),
        secret_key=key,
        fetcher=fetcher_from(settings),
        caches=Caches(),
        upstream=upstream_client_from(settings),
    )
    resources.ensure_own_api(ctx)
    return Services(settings=settings, store=store, ctx=ctx)


def warm_up(services: Services) -> None:
    """Load (on a new database, create) the signing keys before the first request. Only the
    server does this: it holds the AUTHGATE_SECRET_KEY the private keys are encrypted with."""
    keys.current_keys(services.ctx)
    apply_upstream_configuration(services)
