"""The `WWW-Authenticate: Bearer` challenge of a resource server (RFC 6750 §3, RFC 9728 §5.1).

"The "scope" attribute is a space-delimited list of case-sensitive scope values indicating the
required scope of the access token for accessing the requested resource" (RFC 6750 §3). MCP
clients read it from the 401 to choose what to ask for, and from a 403 `insufficient_scope` to
step up; `resource_metadata` tells them where to find the authorization server. This is the one
place the challenge is built: `BearerAuth` and the example MCP server both answer with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# RFC 6750 §3: attribute values are limited to %x20-21 / %x23-5B / %x5D-7E (no '"' or '\').
_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def bearer_challenge(
    *,
    error: str | None = None,
    description: str | None = None,
    scopes: Sequence[str] = (),
    resource_metadata: str | None = None,
) -> str:
    """`Bearer error="…", error_description="…", scope="…", resource_metadata="…"`, each
    attribute only when given; a request without credentials gets no error (RFC 6750 §3)."""
    params: list[tuple[str, str]] = []
    if error is not None:
        params.append(("error", error))
    if description is not None:
        params.append(("error_description", description))
    if scopes:
        params.append(("scope", " ".join(dict.fromkeys(scopes))))
    if resource_metadata is not None:
        params.append(("resource_metadata", resource_metadata))
    attributes = ", ".join(f'{k}="{_UNSAFE.sub("?", v)}"' for k, v in params)
    return f"Bearer {attributes}" if attributes else "Bearer"
