"""The grant plug-in interface: one handler per ``grant_type`` (RFC 6749 §4, §6)."""

from __future__ import annotations

from typing import Protocol

from authgate.core.client_auth import AuthenticatedClient
from authgate.core.context import Actor, Context
from authgate.core.params import Params
from authgate.core.tokens import TokenResponse


class GrantHandler(Protocol):
    grant_type: str

    def handle(
        self, ctx: Context, client: AuthenticatedClient, params: Params, actor: Actor
    ) -> TokenResponse: ...
