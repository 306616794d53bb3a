"""The operator's controls over Client ID Metadata Document clients (DESIGN.md §7: "the
operator's controls (switch, redirect hosts, cap, expiry, document-host policy) govern both"
dynamic registration and metadata documents).

A document client is created by whoever first names its URL, anonymously, so it answers to
the same runtime settings as a client that registers itself (core/registration_settings.py),
checked on every use, so that a change of the settings applies to the clients already stored:

- ``documents_enabled``: the operator's switch (the environment's ``client_metadata_documents``
  stays the hard off switch: then nothing is fetched at all);
- the document URL's host: refused when on ``document_denied_hosts``; when
  ``document_hosts`` is not empty, only its hosts; while registration needs an initial access
  token (which a document cannot present), only hosts on ``document_hosts`` — an operator who
  closed registration to strangers closes documents to them too;
- ``redirect_hosts``: every redirect URI of the document must be on it (when it is set);
- a document not stored yet (``admit_new``): rate-limited per source network (an IPv4
  address, an IPv6 /64: ``rate_limits.source``) and overall, and refused once
  ``document_max_clients`` document clients are stored; unused ones expire after
  ``client_ttl_days`` (``client_expiry.purge_stale_self_registered_apps``), so the cap does not fill
  with clients that came once.

Every refusal is ``invalid_client``: an error page at the authorization endpoint (the
redirect URI is not trusted), 401 at the token endpoint.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from authgate.core import client_expiry, rate_limits
from authgate.core import registration_settings as runtime_settings
from authgate.core.context import SYSTEM, Actor, Context
from authgate.core.errors import InvalidClientError
from authgate.core.models import App, RegistrationSettings
from authgate.core.rate_limits import Limit

PURGE_KEY = "documents:purge"


def refused(reason: str, debug: str | None = None) -> InvalidClientError:
    return InvalidClientError(
        f"The client metadata document could not be used: {reason}", debug=debug
    )


def check_url_host(url: str, settings: RegistrationSettings) -> None:
    """The operator's switch and document-host lists, for the URL a client_id names."""
    if not settings.documents_enabled:
        raise refused("this server does not accept client metadata documents now")
    host = (urlsplit(url).hostname or "").lower()
    if runtime_settings.host_matches(host, settings.document_denied_hosts):
        raise refused(f"documents from {host} are not accepted by this server")
    listed = runtime_settings.host_matches(host, settings.document_hosts)
    if settings.document_hosts and not listed:
        raise refused(f"documents from {host} are not accepted by this server")
    if settings.initial_access_token_required and not listed:
        raise refused(
            "this server registers clients only with an initial access token, and accepts "
            "documents only from hosts its operator lists",
            debug="registration_initial_access_token_required and host not in document_hosts",
        )


def check_redirect_uris(app: App, settings: RegistrationSettings) -> None:
    """The redirect-host allow-list of self-registered clients applies to documents too."""
    if not settings.redirect_hosts:
        return
    for uri in app.redirect_uris:
        if not runtime_settings.redirect_allowed(uri, settings.redirect_hosts):
            raise refused(
                f"the redirect URI {uri} is not on a host this server accepts for "
                "self-registered clients"
            )


_WHAT = "new client documents"


def admit_new(ctx: Context, actor: Actor | None, settings: RegistrationSettings) -> None:
    """Before a document not stored yet is fetched: the cap (a refusal counts against no
    limit), then the rate limits per source network and overall. A limit this node already
    knows to be spent refuses first, from memory: a flood of fresh document URLs then costs
    no store query per request (the cap's count among them)."""
    limits = [(Limit("documents:global", ctx.policy.document_loads_overall), "documents_global")]
    if actor is not None and actor.ip:
        network = rate_limits.source_key(actor)
        per_ip = Limit(f"documents:ip:{network}", ctx.policy.document_loads_per_ip)
        limits.insert(0, (per_ip, "documents_ip"))
    for limit, scope in limits:
        rate_limits.refuse_when_known_over(ctx, limit, scope=scope, what=_WHAT)
    _check_cap(ctx, settings)
    for limit, scope in limits:
        rate_limits.enforce(ctx, actor or SYSTEM, limit, scope=scope, what=_WHAT)


def _check_cap(ctx: Context, settings: RegistrationSettings) -> None:
    if not settings.document_max_clients:
        return
    if ctx.store.count_document_apps() >= settings.document_max_clients:
        # Expire unused ones first (at most once an hour, on any node): the cap counts the
        # clients in use, not the ones that came once.
        if settings.client_ttl_days > 0 and rate_limits.first_in_window(ctx, PURGE_KEY):
            client_expiry.purge_stale_self_registered_apps(ctx, SYSTEM)
        if ctx.store.count_document_apps() >= settings.document_max_clients:
            raise refused(
                "this server has reached its limit of metadata-document clients; ask its "
                "operator to register the client",
                debug=f"client_metadata_max_clients={settings.document_max_clients}",
            )
