"""What every core operation runs with: the store, the clock and the policy, plus who is acting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from authgate.core.models import ActorType
from authgate.core.policy import Policy
from authgate.core.ports import Clock, DocumentFetcher, Store

if TYPE_CHECKING:
    from authgate.core.client_assertion import ClientKeys
    from authgate.core.client_metadata import DocumentFailures
    from authgate.core.keys import Keyring
    from authgate.core.rate_limits import Leases
    from authgate.core.resources import ResourceCache
    from authgate.core.settings import SettingsCache


def _new_keyring() -> Keyring:
    from authgate.core.keys import Keyring  # deferred: keys builds on this module

    return Keyring()


def _new_resource_cache() -> ResourceCache:
    from authgate.core.resources import ResourceCache  # deferred, as above

    return ResourceCache()


def _new_leases() -> Leases:
    from authgate.core.rate_limits import Leases  # deferred, as above

    return Leases()


def _new_document_failures() -> DocumentFailures:
    from authgate.core.client_metadata import DocumentFailures  # deferred, as above

    return DocumentFailures()


def _new_settings_cache() -> SettingsCache:
    from authgate.core.settings import SettingsCache  # deferred, as above

    return SettingsCache()


def _new_client_keys() -> ClientKeys:
    from authgate.core.client_assertion import ClientKeys  # deferred, as above

    return ClientKeys()


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    clock: Clock
    policy: Policy
    # Key material for HMACs (CSRF tokens); derived from AUTHGATE_SECRET_KEY by app.py.
    secret_key: bytes
    # This node's cache of signing keys (the store is the truth; see core/keys.py).
    keyring: Keyring = field(default_factory=_new_keyring)
    # This node's cache of registered resources (core/resources.py).
    resources: ResourceCache = field(default_factory=_new_resource_cache)
    # This node's blocks of rate-limit hits (core/rate_limits.py).
    rate_leases: Leases = field(default_factory=_new_leases)
    # Fetches client-supplied URLs (metadata documents, jwks_uri) without SSRF; None turns
    # Client ID Metadata Documents off (and with them jwks_uri).
    fetcher: DocumentFetcher | None = None
    # This node's memory of recent metadata-document failures and of clients' jwks_uri keys.
    client_documents: DocumentFailures = field(default_factory=_new_document_failures)
    client_keys: ClientKeys = field(default_factory=_new_client_keys)
    # This node's copy of the runtime settings of self-registered clients (core/settings.py).
    registration_settings: SettingsCache = field(default_factory=_new_settings_cache)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused an event and from where; recorded with every audit event."""

    type: ActorType
    id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def as_user(self, user_id: str) -> Actor:
        return Actor("user", user_id, self.ip, self.user_agent, self.request_id)

    def as_client(self, client_id: str) -> Actor:
        return Actor("client", client_id, self.ip, self.user_agent, self.request_id)


SYSTEM = Actor("system")
