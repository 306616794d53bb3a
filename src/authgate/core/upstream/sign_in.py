"""An upstream sign-in from the callback to the session, audited whatever its end.

``begin`` stores the transaction and returns the provider's authorization URL; ``finish``
checks the callback (``callback.handle``), finds the user (``linking.resolve_user``) and
starts the browser session with ``amr`` "fed" and ``idp`` the provider's issuer, the values
authgate's own ID tokens then state (``id_tokens.py``). A refusal is audited as
``upstream.sign_in_refused`` with its reason, and raised for the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authgate.core import accounts, audit, flows
from authgate.core.context import Actor, Context
from authgate.core.models import FEDERATED_AMR, Session, User
from authgate.core.upstream import callback, linking, providers, transactions
from authgate.core.upstream.errors import UpstreamRefusedError, UpstreamUnavailableError


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: Session
    cookie: str  # the session cookie's value, shown once
    return_to: str


def begin(ctx: Context, actor: Actor, provider_id: str, return_to: str) -> transactions.Started:
    """A new transaction: the provider's authorization URL and the state to bind it to."""
    try:
        return transactions.start(ctx, provider_id, return_to)
    except (UpstreamRefusedError, UpstreamUnavailableError) as exc:
        _refused(ctx, actor, provider_id, exc)
        raise


def _refused(
    ctx: Context,
    actor: Actor,
    provider_id: str,
    exc: UpstreamRefusedError | UpstreamUnavailableError,
) -> None:
    audit.record(
        ctx,
        actor,
        "upstream.sign_in_refused",
        target_type="upstream_provider",
        target_id=provider_id if providers.is_id(provider_id) else None,
        reason=exc.reason,
    )
    flows.step("sign_in", "refused", "sign_in_failed", provider=provider_id, why=exc.reason)


def finish(
    ctx: Context,
    actor: Actor,
    provider_id: str,
    params: Mapping[str, str],
    browser_state: str | None,
) -> SignedIn:
    try:
        done = callback.handle(ctx, provider_id, params, browser_state)
        user = linking.resolve_user(ctx, actor, done.provider, done.claims)
    except (UpstreamRefusedError, UpstreamUnavailableError) as exc:
        _refused(ctx, actor, provider_id, exc)
        raise
    issuer = done.provider.issuer
    session, cookie = accounts.start_session(
        ctx, actor.as_user(user.id), user, amr=FEDERATED_AMR, idp=issuer
    )
    audit.record(
        ctx,
        actor.as_user(user.id),
        "upstream.logged_in",
        target_type="user",
        target_id=user.id,
        provider=provider_id,
        idp=issuer,
    )
    flows.note(user_id=user.id)
    flows.step("sign_in", provider=provider_id, idp=issuer)
    return SignedIn(user, session, cookie, done.return_to)
