"""Reading OAuth form posts (RFC 6749 §3.2: application/x-www-form-urlencoded, UTF-8)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from authgate.core.errors import InvalidRequestError
from authgate.core.params import Params

MAX_FORM = 64 * 1024
# Parameters that carry credentials must not travel in the URL, where logs and Referer keep them.
URL_FORBIDDEN = ("client_secret", "code", "refresh_token", "code_verifier", "token")


async def read_form(request: Request) -> Params:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The request body must be application/x-www-form-urlencoded")
    if request.scope.get("query_string"):
        for name in URL_FORBIDDEN:
            if name in request.query_params:
                raise InvalidRequestError(f"{name} must be sent in the request body, not the URL")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise InvalidRequestError("The request body is too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError("The request body is not valid form data") from exc
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise InvalidRequestError("The request body contains NUL characters")
    return Params.from_pairs(pairs)
