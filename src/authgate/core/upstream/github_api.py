"""Who signed in through GitHub: the code exchanged for an access token ("Authorizing OAuth
apps", web application flow step 2), then GitHub's REST API with that token: "Get the
authenticated user", "List email addresses for the authenticated user", and, only for the
organisations and teams the provider's conditions name, "Get an organization membership for
the authenticated user" and "Get team membership for a user".

GitHub is no OpenID Provider: there is no ID token to verify and no ``nonce``; the answers
come over TLS from the API the operator configured, with the token just issued for this
code (bound to this transaction by ``state`` and PKCE). They become the claims the linking
rules read: ``sub`` GitHub's numeric user id (a login can be renamed, and another account may
then take it), ``preferred_username`` the login, ``name``, ``email``/``email_verified`` a
verified address only (the primary one preferred), and ``orgs``/``teams`` the named
memberships that are active. authgate keeps no GitHub token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from authgate.core.context import Context
from authgate.core.models import UpstreamProvider
from authgate.core.ports import HttpAnswer
from authgate.core.upstream import backchannel, github
from authgate.core.upstream.errors import (
    DOWN,
    UpstreamInvalidError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)
from authgate.core.upstream.id_token import BAD

#: "Getting started with the REST API": a request without a User-Agent is refused.
USER_AGENT = "authgate (upstream sign-in)"
API_VERSION = "2022-11-28"
NOT_GRANTED = "GitHub did not grant the access this sign-in needs, so you were not signed in."


def _unavailable(answer: HttpAnswer, what: str) -> None:
    # 429 and 5xx: GitHub is down or busy; the person may try again.
    if answer.status >= 500 or answer.status == 429:
        raise UpstreamUnavailableError(DOWN, debug=f"GitHub {what}: HTTP {answer.status}")


def _check_granted(provider: UpstreamProvider, scope: object) -> None:
    """ "Scopes for OAuth apps": the token response's ``scope`` lists what the person granted,
    which may be less than what was asked for."""
    needed = {"user:email"} | ({github.ORG_SCOPE} if any(github.memberships(provider)) else set())
    missing = needed - github.granted(scope if isinstance(scope, str) else "")
    if missing:
        raise UpstreamRefusedError(
            NOT_GRANTED, reason="scope_not_granted", debug=f"not granted: {sorted(missing)}"
        )


def exchange(
    ctx: Context,
    provider: UpstreamProvider,
    code: str,
    verifier: str,
    redirect_uri: str,
    auth: tuple[dict[str, str], dict[str, str]],
) -> str:
    """POST {issuer}/login/oauth/access_token, authenticated by ``auth`` (headers, form
    fields: ``token_auth.for_github``); the access token."""
    form = {
        **auth[1],
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    headers = {**auth[0], "Accept": "application/json", "User-Agent": USER_AGENT}
    answer = backchannel.send(ctx, "POST", github.token_endpoint(provider), headers, form)
    _unavailable(answer, "token endpoint")
    body = backchannel.json_object(answer)
    token = body.get("access_token")
    # GitHub answers a bad code, secret or verifier with 200 and an "error" member.
    if answer.status != 200 or "error" in body or not isinstance(token, str) or not token:
        raise UpstreamRefusedError(
            "GitHub did not complete the sign-in.",
            reason="token_exchange_failed",
            debug=f"HTTP {answer.status}, error {str(body.get('error'))[:64]!r}",
        )
    _check_granted(provider, body.get("scope"))
    return token


def _get(ctx: Context, provider: UpstreamProvider, token: str, path: str) -> HttpAnswer:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
    }
    answer = backchannel.send(ctx, "GET", github.api_base(provider.issuer) + path, headers, None)
    _unavailable(answer, path)
    return answer


def _invalid(debug: str) -> UpstreamInvalidError:
    return UpstreamInvalidError(BAD, reason="userinfo_invalid", debug=debug)


def _user(ctx: Context, provider: UpstreamProvider, token: str) -> dict[str, Any]:
    answer = _get(ctx, provider, token, "/user")
    user = backchannel.json_object(answer)
    user_id, login, name = user.get("id"), user.get("login"), user.get("name")
    if answer.status != 200 or type(user_id) is not int or user_id <= 0:
        raise _invalid(f"/user: HTTP {answer.status}, no numeric id")
    if not isinstance(login, str) or not github.is_login(login):
        raise _invalid("/user: no valid login")
    return {
        "sub": str(user_id),
        "preferred_username": login,
        "name": name if isinstance(name, str) else "",
    }


def _email(ctx: Context, provider: UpstreamProvider, token: str) -> dict[str, Any]:
    """A verified address, the primary one if it is verified; none when none is."""
    answer = _get(ctx, provider, token, "/user/emails?per_page=100")
    listed = backchannel.json_value(answer)
    if answer.status != 200 or not isinstance(listed, list):
        raise _invalid(f"/user/emails: HTTP {answer.status}")
    verified = [
        e
        for e in listed
        if isinstance(e, dict) and e.get("verified") is True and isinstance(e.get("email"), str)
    ]
    verified.sort(key=lambda e: e.get("primary") is not True)
    return {"email": verified[0]["email"], "email_verified": True} if verified else {}


def _active(answer: HttpAnswer) -> bool:
    """A membership: 200 with state "active" ("pending" is an invitation not yet accepted);
    404 is none, and so is 403 (an organisation that has not approved this OAuth app)."""
    return answer.status == 200 and backchannel.json_object(answer).get("state") == "active"


def _memberships(
    ctx: Context, provider: UpstreamProvider, token: str, login: str
) -> dict[str, list[str]]:
    orgs, teams = github.memberships(provider)
    held_orgs = [
        org
        for org in orgs
        if _active(_get(ctx, provider, token, f"/user/memberships/orgs/{quote(org, safe='')}"))
    ]
    held_teams = []
    for team in teams:
        org, _, slug = team.partition("/")
        path = f"/orgs/{quote(org, safe='')}/teams/{quote(slug, safe='')}/memberships/{login}"
        if _active(_get(ctx, provider, token, path)):
            held_teams.append(team)
    return {github.ORGS: held_orgs, github.TEAMS: held_teams}


def claims(
    ctx: Context,
    provider: UpstreamProvider,
    code: str,
    verifier: str,
    redirect_uri: str,
    auth: tuple[dict[str, str], dict[str, str]],
) -> dict[str, Any]:
    """The person GitHub vouched for, as the claims ``linking`` reads (module doc)."""
    token = exchange(ctx, provider, code, verifier, redirect_uri, auth)
    found = _user(ctx, provider, token)
    found |= _email(ctx, provider, token)
    found |= _memberships(ctx, provider, token, found["preferred_username"])
    return found
