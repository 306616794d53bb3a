"""What every core operation runs with: the store, the clock and the policy, plus who is acting."""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate.core.caches import Caches
from authgate.core.models import ActorType
from authgate.core.policy import Policy
from authgate.core.ports import Clock, DocumentFetcher, Store, UpstreamHttp


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    clock: Clock
    policy: Policy
    # Key material for HMACs (CSRF tokens); derived from AUTHGATE_SECRET_KEY by services.py.
    secret_key: bytes
    # Fetches client-supplied URLs (metadata documents, jwks_uri) without SSRF; None turns
    # Client ID Metadata Documents off (and with them jwks_uri).
    fetcher: DocumentFetcher | None = None
    # This process's caches (core/caches.py), built by services.py; a second node has its own.
    caches: Caches = field(default_factory=Caches)
    # Back-channel requests to upstream OpenID Providers (sign-in through them); None: no
    # upstream sign-in on this node.
    upstream: UpstreamHttp | None = None


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
