"""``authgate keys``: the JWS signing keys (public halves only) and rotation.

``rotate`` is ``core.keys.rotate`` acting as ``system``. Running servers pick the new key up
within their key cache time (``policy.cache_ttl``, 30 s); until then they may still sign with
the old one, which stays published while it is retiring, so those tokens still verify.
"""

from __future__ import annotations

from datetime import datetime

import click

from authgate.cli.common import emit, json_option, open_context, table
from authgate.core import keys as core
from authgate.core.context import SYSTEM, Context
from authgate.crypto.encryption import DecryptionError
from authgate.schemas import SigningKeyOut


@click.group()
def keys() -> None:
    """JWS signing keys (published in /.well-known/jwks.json)."""


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _rows(out: list[SigningKeyOut]) -> list[list[str]]:
    return [
        [
            k.kid,
            k.alg,
            k.state,
            _when(k.created_at),
            _when(k.activated_at),
            _when(k.expires_at),
        ]
        for k in out
    ]


def _listing(ctx: Context) -> list[SigningKeyOut]:
    published = core.published(list(ctx.store.list_signing_keys()), ctx.clock.now())
    return [SigningKeyOut.of(key) for key in published]


@keys.command(name="list")
@json_option
def list_keys(as_json: bool) -> None:
    """List the published keys: next, active and retiring."""
    out = _listing(open_context())
    emit(
        as_json,
        [k.model_dump(mode="json") for k in out],
        lambda: table(["KID", "ALG", "STATE", "CREATED", "ACTIVATED", "EXPIRES"], _rows(out)),
    )


@keys.command()
@json_option
def rotate(as_json: bool) -> None:
    """Make the next key active now, retire the active one (published until its tokens have
    expired) and publish a new next key."""
    ctx = open_context()
    try:
        # The new key is encrypted with this process's secret key: it must be the servers'.
        core.signer(ctx)
    except DecryptionError as exc:
        raise click.ClickException(
            "The signing keys cannot be decrypted with this AUTHGATE_SECRET_KEY: set the one "
            "the server uses (a key made with another one would be unusable by the server)"
        ) from exc
    out = SigningKeyOut.of(core.rotate(ctx, SYSTEM))
    emit(
        as_json,
        out.model_dump(mode="json"),
        lambda: (
            f"Rotated: {out.kid} ({out.alg}) is now active.\n"
            + table(
                ["KID", "ALG", "STATE", "CREATED", "ACTIVATED", "EXPIRES"], _rows(_listing(ctx))
            )
        ),
    )
