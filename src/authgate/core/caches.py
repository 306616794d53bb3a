"""This node's caches: what one process keeps in memory between requests.

The store is the truth. Each class here holds one kind of copy and its lock, nothing more: the
rules that fill a cache, and how long its copy is trusted, live in the module that owns the data
(``keys.py``, ``resources.py``, ``settings.py``, ``rate_limits.py``, ``client_metadata.py``,
``client_assertion.py``). That is why nothing here takes a ``Context``: the context holds the
caches, so the caches cannot know the context. ``services.py`` builds one ``Caches`` per process; a
test that plays a second node gives it a fresh one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from authgate.core.models import RegistrationSettings, Resource, SigningKey
from authgate.crypto import jose

T = TypeVar("T")
#: Bounds on what a node remembers per key, so that junk cannot grow a cache without limit.
MAX_LEASES = 10_000
MAX_FAILURES_KEPT = 1024
MAX_CACHED_CLIENTS = 1024
MAX_KNOWN_DOCUMENTS = 4096


def fresh(loaded_at: datetime | None, now: datetime, ttl: timedelta) -> bool:
    """Loaded less than ``ttl`` ago. Loaded "in the future" (the clock went back since) is
    stale, not fresh."""
    return loaded_at is not None and timedelta(0) <= now - loaded_at < ttl


class TimedValue(Generic[T]):
    """One value and when it was loaded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded_at: datetime | None = None

    def get(self, now: datetime, ttl: timedelta) -> T | None:
        """The value if it is fresh, else None; never waits for a load."""
        with self._lock:
            value, loaded_at = self._value, self._loaded_at
        return value if fresh(loaded_at, now, ttl) else None

    def put(self, now: datetime, value: T) -> None:
        with self._lock:
            self._value, self._loaded_at = value, now

    def invalidate(self) -> None:
        with self._lock:
            self._value = self._loaded_at = None


class Keyring:
    """The signing keys (the published set) and the decrypted private keys already used."""

    def __init__(self) -> None:
        self._keys: list[SigningKey] = []
        self._loaded_at: datetime | None = None
        self._private: dict[str, jose.Key] = {}
        self._lock = threading.Lock()

    def keys(
        self, now: datetime, ttl: timedelta, refresh: Callable[[], list[SigningKey]]
    ) -> list[SigningKey]:
        """The keys, refreshed by ``refresh`` when stale; one refresh at a time per node."""
        with self._lock:
            if not fresh(self._loaded_at, now, ttl):
                self._keys, self._loaded_at = refresh(), now
            return self._keys

    def cached(self, now: datetime, ttl: timedelta) -> list[SigningKey] | None:
        """The keys if fresh, else None; never blocks (a refresh holds the lock across
        database reads, and the event loop must not wait for it)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._keys if fresh(self._loaded_at, now, ttl) else None
        finally:
            self._lock.release()

    def private_key(self, kid: str, load: Callable[[], jose.Key]) -> jose.Key:
        private = self._private.get(kid)
        if private is None:
            private = self._private[kid] = load()
        return private

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None


class ResourceCache:
    """The registered resources this node has looked up, and every scope name they define.
    Unknown identifiers are not remembered, so a new resource is found by the next request."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[datetime, Resource]] = {}
        self._scopes: TimedValue[list[str]] = TimedValue()
        self._lock = threading.Lock()

    def get(self, identifier: str, now: datetime, ttl: timedelta) -> Resource | None:
        with self._lock:
            hit = self._entries.get(identifier)
        return hit[1] if hit is not None and fresh(hit[0], now, ttl) else None

    def put(self, identifier: str, now: datetime, resource: Resource | None) -> None:
        with self._lock:
            if resource is None:
                self._entries.pop(identifier, None)
            else:
                self._entries[identifier] = (now, resource)

    @property
    def scope_names(self) -> TimedValue[list[str]]:
        return self._scopes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self._scopes.invalidate()


@dataclass(slots=True)
class _Lease:
    window_start: datetime
    next: int  # the number the next local hit gets
    end: int  # the last number of the claimed block


class Leases:
    """A node's blocks of rate-limit hit numbers, and the keys it has seen over their limit
    in a window (see ``rate_limits.hit``)."""

    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        #: key -> (window start, limit) of a window in which the key is over that limit.
        self._over: dict[str, tuple[datetime, int]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, size: int, start: datetime, claim: Callable[[], int]) -> int:
        """The next number of ``key`` in the window that begins at ``start``: from this node's
        block, else from a new block of ``size`` that ``claim`` reserves in the store (it
        returns the block's last number)."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease.window_start == start and lease.next <= lease.end:
                lease.next += 1
                return lease.next - 1
        end = claim()
        with self._lock:
            if len(self._leases) >= MAX_LEASES:
                _forget_past(self._leases, start, lambda lease: lease.window_start)
            if size > 1:
                self._leases[key] = _Lease(start, end - size + 2, end)
        return end - size + 1

    def over(self, key: str, start: datetime, max_hits: int) -> bool:
        """Whether ``key`` was seen over ``max_hits`` in the window that begins at ``start``."""
        with self._lock:
            return self._over.get(key) == (start, max_hits)

    def remember_over(self, key: str, start: datetime, max_hits: int) -> None:
        with self._lock:
            if len(self._over) >= MAX_LEASES:
                _forget_past(self._over, start, lambda seen: seen[0])
            self._over[key] = (start, max_hits)


def _forget_past(known: dict[str, T], start: datetime, window: Callable[[T], datetime]) -> None:
    """Forget the entries of windows before ``start`` (and, if that is not enough, all)."""
    stale = [k for k, v in known.items() if window(v) < start]
    for k in stale if len(stale) >= len(known) // 2 else list(known):
        del known[k]


@dataclass(frozen=True, slots=True)
class DocumentFailure:
    until: datetime
    reason: str
    stale_ok: bool


class DocumentFailures:
    """Recent failures per client metadata-document URL (bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, DocumentFailure] = {}

    def get(self, url: str, now: datetime) -> DocumentFailure | None:
        with self._lock:
            failure = self._failures.get(url)
            if failure is not None and failure.until <= now:
                del self._failures[url]
                return None
            return failure

    def remember(self, url: str, now: datetime, failure: DocumentFailure) -> None:
        with self._lock:
            if len(self._failures) >= MAX_FAILURES_KEPT:
                self._failures = {u: f for u, f in self._failures.items() if f.until > now}
                while len(self._failures) >= MAX_FAILURES_KEPT:
                    del self._failures[next(iter(self._failures))]
            self._failures[url] = failure

    def forget(self, url: str) -> None:
        with self._lock:
            self._failures.pop(url, None)


@dataclass(frozen=True, slots=True)
class FetchedKeys:
    """What a client's ``jwks_uri`` answered (``keys``) or why it did not (``error``)."""

    jwks_uri: str
    keys: tuple[dict[str, Any], ...]
    fetched_at: datetime
    expires_at: datetime
    error: str | None = None


class ClientKeys:
    """Keys fetched from clients' ``jwks_uri``, per client id (bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, FetchedKeys] = {}

    def get(self, client_id: str) -> FetchedKeys | None:
        with self._lock:
            return self._entries.get(client_id)

    def put(self, client_id: str, entry: FetchedKeys) -> None:
        with self._lock:
            if len(self._entries) >= MAX_CACHED_CLIENTS:
                self._entries.clear()
            self._entries[client_id] = entry


class KnownDocuments:
    """Metadata-document client ids this node has served a client from (bounded; the oldest
    is forgotten first). Membership is read without the lock: a dict lookup is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, None] = {}

    def add(self, url: str) -> None:
        if url in self._urls:
            return
        with self._lock:
            while len(self._urls) >= MAX_KNOWN_DOCUMENTS:
                del self._urls[next(iter(self._urls))]
            self._urls[url] = None

    def __contains__(self, url: str) -> bool:
        return url in self._urls


class UpstreamDocuments:
    """Each upstream provider's discovery document and JWKS, as loaded (``upstream/discovery.py``
    decides how long they are trusted and when to load them again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[datetime, dict[str, Any]]] = {}

    def get(self, key: tuple[str, str], now: datetime, ttl: timedelta) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry is not None and fresh(entry[0], now, ttl) else None

    def put(self, key: tuple[str, str], now: datetime, document: dict[str, Any]) -> None:
        with self._lock:
            if len(self._entries) >= MAX_CACHED_CLIENTS:
                self._entries.clear()
            self._entries[key] = (now, document)

    def forget(self, provider_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == provider_id]:
                del self._entries[key]


@dataclass(frozen=True, slots=True)
class Caches:
    """Every cache of one node; ``services.py`` builds one per process."""

    keyring: Keyring = field(default_factory=Keyring)
    resources: ResourceCache = field(default_factory=ResourceCache)
    rate_leases: Leases = field(default_factory=Leases)
    client_documents: DocumentFailures = field(default_factory=DocumentFailures)
    client_keys: ClientKeys = field(default_factory=ClientKeys)
    known_documents: KnownDocuments = field(default_factory=KnownDocuments)
    registration_settings: TimedValue[RegistrationSettings] = field(default_factory=TimedValue)
    upstream_documents: UpstreamDocuments = field(default_factory=UpstreamDocuments)
