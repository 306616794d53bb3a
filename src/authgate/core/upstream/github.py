"""GitHub as an upstream provider (``kind`` "github"): an OAuth 2.0 app, not an OpenID
Provider — no discovery, no ID token, no ``nonce``; who signed in comes from GitHub's REST API
(``github_api.py``). Here: its URLs, its scopes, and the rules of its settings.

``issuer`` is GitHub's web base URL: ``https://github.com``, or a GitHub Enterprise Server's
(``https://github.example.com``). The REST API is ``https://api.github.com`` for the former
and ``{issuer}/api/v3`` for the latter (GitHub Enterprise Server's REST API docs).

Organisation and team conditions are the claims ``orgs`` and ``teams`` (``"org"`` and
``"org/team-slug"`` values) that ``github_api`` synthesises by asking GitHub about exactly the
memberships the settings name, so ``required_claim``/``admin_claim`` work as for OIDC.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import urlsplit

from authgate.core.models import UpstreamProvider
from authgate.core.upstream.errors import invalid_setting

#: "Scopes for OAuth apps": read:user for the profile, user:email for /user/emails.
DEFAULT_SCOPES = ("read:user", "user:email")
#: Needed to ask about organisation and team memberships.
ORG_SCOPE = "read:org"
#: A scope GitHub grants together with those it includes ("Scopes for OAuth apps").
IMPLIED = {
    "user": ("read:user", "user:email", "user:follow"),
    "admin:org": ("write:org", "read:org"),
    "write:org": ("read:org",),
}
ORGS, TEAMS = "orgs", "teams"
#: The claims a GitHub sign-in has (``github_api.claims``): what required/admin claims may name.
CLAIMS = ("sub", "email", "email_verified", "name", "preferred_username", ORGS, TEAMS)
#: Each membership named in the settings is one API request per sign-in.
MAX_MEMBERSHIPS = 10
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_TEAM = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9][A-Za-z0-9._-]{0,99})")


class Conditions(Protocol):
    """What the membership rules read of a provider or of its spec."""

    @property
    def required_claim(self) -> str | None: ...
    @property
    def required_values(self) -> tuple[str, ...]: ...
    @property
    def admin_claim(self) -> str | None: ...
    @property
    def admin_values(self) -> tuple[str, ...]: ...


def is_login(value: str) -> bool:
    """A GitHub user or organisation login: 1-39 of letters, digits and '-'."""
    return _LOGIN.fullmatch(value) is not None


def authorization_endpoint(provider: UpstreamProvider) -> str:
    """ "Authorizing OAuth apps", web application flow, step 1."""
    return f"{provider.issuer}/login/oauth/authorize"


def token_endpoint(provider: UpstreamProvider) -> str:
    """ "Authorizing OAuth apps", step 2: the code exchanged for an access token."""
    return f"{provider.issuer}/login/oauth/access_token"


def api_base(issuer: str) -> str:
    if urlsplit(issuer).hostname == "github.com":
        return "https://api.github.com"
    return f"{issuer}/api/v3"


def _values_of(claim: str | None, values: tuple[str, ...], wanted: str) -> tuple[str, ...]:
    return values if claim == wanted else ()


def memberships(provider: Conditions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(orgs, teams) the provider's conditions name: the memberships to ask GitHub about."""
    named = (
        (provider.required_claim, provider.required_values),
        (provider.admin_claim, provider.admin_values),
    )
    orgs = [v for claim, values in named for v in _values_of(claim, values, ORGS)]
    teams = [v for claim, values in named for v in _values_of(claim, values, TEAMS)]
    return tuple(dict.fromkeys(orgs)), tuple(dict.fromkeys(teams))


def check_issuer(issuer: str) -> str:
    """An https base URL (a host, no path): kept without a trailing "/"."""
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise invalid_setting("issuer", "GitHub's https base URL, e.g. https://github.com")
    if parts.path not in ("", "/") or parts.username or parts.password or len(issuer) > 512:
        raise invalid_setting("issuer", "a base URL without a path, e.g. https://github.com")
    return issuer.rstrip("/")


def check_claim(field: str, claim: str | None, values: tuple[str, ...]) -> None:
    if claim is None:
        return
    if claim not in CLAIMS:
        raise invalid_setting(field, f"a claim of a GitHub sign-in: {', '.join(CLAIMS)}")
    pattern = _LOGIN if claim == ORGS else _TEAM if claim == TEAMS else None
    for value in values:
        if pattern is not None and not pattern.fullmatch(value):
            shape = "an organisation login" if claim == ORGS else '"org/team-slug"'
            raise invalid_setting(field, f"{value[:64]!r} is not {shape}")


def check_scopes(scopes: list[str], needs_org: bool) -> list[str]:
    """The scopes to ask for: the defaults when none are given, read:org added when the
    conditions name organisations or teams."""
    asked = scopes or list(DEFAULT_SCOPES)
    if "openid" in asked:
        raise invalid_setting("scopes", "GitHub is not an OpenID Provider: no 'openid'")
    if not {"user:email", "user"} & set(asked):
        raise invalid_setting("scopes", "'user:email' is needed to read verified addresses")
    if needs_org and not {ORG_SCOPE, "write:org", "admin:org"} & set(asked):
        asked = [*asked, ORG_SCOPE]
    return asked


def check_memberships(provider: Conditions) -> None:
    orgs, teams = memberships(provider)
    if len(orgs) + len(teams) > MAX_MEMBERSHIPS:
        field = "required_claim" if provider.required_claim in (ORGS, TEAMS) else "admin_claim"
        raise invalid_setting(field, f"at most {MAX_MEMBERSHIPS} organisations and teams")


def granted(scope: str) -> set[str]:
    """The scopes of a token response's ``scope`` (comma-separated), with those they include."""
    names = {s.strip() for s in scope.replace(" ", ",").split(",") if s.strip()}
    return names | {implied for name in names for implied in IMPLIED.get(name, ())}
