"""What the consent page may say about who a client is (DESIGN.md §7, "Trust label on consent":
"'registered by the operator'; 'published by <host>' only for a document whose redirect URIs
are on that host; loopback-only documents and self-registered clients 'unverified'; logos only
for clients the operator trusts").

A metadata document proves only that its host published it. That host vouches for the client
only where the browser is sent back to it: every redirect URI https on the document's own host.
A document whose redirect URIs are all loopback or private-use schemes describes a program on
the user's device, which can claim any name; one that sends the browser to another host is not
vouched for by the host it was fetched from. A client that registered itself (RFC 7591) chose
everything it says. Only an operator's app is shown with its logo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from authgate.core import client_metadata, name_collisions, redirect_uris
from authgate.core.context import Context
from authgate.core.models import App

IdentityKind = Literal["operator", "published", "device", "unverified", "impersonating"]


@dataclass(frozen=True, slots=True)
class Identity:
    """``host``: the host a metadata document was fetched from (documents only)."""

    kind: IdentityKind
    host: str = ""

    @property
    def shows_logo(self) -> bool:
        """A logo is the operator's word about an app, never a self-registered client's."""
        return self.kind == "operator"


def on_device(uri: str) -> bool:
    """A loopback http URI (RFC 8252 §7.3) or a private-use scheme (RFC 8252 §7.1): the
    browser goes back to a program on the user's device."""
    return redirect_uris.is_loopback(uri) or urlsplit(uri).scheme.lower() not in ("http", "https")


def _on_host(uri: str, host: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme.lower() == "https" and (parts.hostname or "").lower() == host


def identity(ctx: Context, app: App) -> Identity:
    """How far authgate can vouch for ``app``; a name copied from an operator's app first."""
    if not (app.dynamically_registered or app.metadata_document):
        return Identity("operator")
    if name_collisions.name_collides(ctx, app):
        return Identity("impersonating")
    host = (client_metadata.document_host(app) or "").lower()
    if not app.metadata_document or not host or not app.redirect_uris:
        return Identity("unverified")
    if all(_on_host(uri, host) for uri in app.redirect_uris):
        return Identity("published", host)
    if all(on_device(uri) for uri in app.redirect_uris):
        return Identity("device", host)
    return Identity("unverified", host)
