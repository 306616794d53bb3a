"""Requests from authgate to an upstream provider's back channel (a token endpoint, UserInfo,
GitHub's REST API) through the ``UpstreamHttp`` port, and the JSON object of an answer.

No answer at all (refused, timed out, a redirect, too large) is ``UpstreamUnavailableError``:
the person reads that the provider is not answering; what the answer says is the caller's.
"""

from __future__ import annotations

import json
from typing import Any

from authgate.core.context import Context
from authgate.core.ports import FetchError, HttpAnswer
from authgate.core.upstream.errors import DOWN, UpstreamUnavailableError


def send(
    ctx: Context, method: str, url: str, headers: dict[str, str], form: dict[str, str] | None
) -> HttpAnswer:
    if ctx.upstream is None:
        raise UpstreamUnavailableError(DOWN, debug="no upstream HTTP client")
    try:
        return ctx.upstream.send(method, url, headers=headers, form=form)
    except FetchError as exc:
        raise UpstreamUnavailableError(DOWN, debug=f"{url}: {exc}") from exc


def json_object(answer: HttpAnswer) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is none."""
    try:
        value = json.loads(answer.body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def json_value(answer: HttpAnswer) -> Any:
    """The answer's JSON value (a list, for some of GitHub's), or None when it is not JSON."""
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):
        return None
