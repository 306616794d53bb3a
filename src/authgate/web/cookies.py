"""authgate's cookies: their names and attributes, decided in one place.

With an https issuer each cookie is a ``__Host-`` cookie (RFC 6265bis §4.1.3.2: "Secure",
"Path=/", no "Domain"), which a browser accepts only from this very host over https: a sibling
subdomain or a plain-http response cannot plant or overwrite it. Over http (development) the
prefix would be refused by browsers, so the names stay plain.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from authgate.config import Settings

SESSION = "authgate_session"
LOGIN_CSRF = "authgate_login_csrf"
# The ``state`` of this browser's upstream sign-in (core/upstream/transactions.py ``consume``).
UPSTREAM_STATE = "authgate_upstream_state"
HOST_PREFIX = "__Host-"
# Over http a cookie may be narrower than the whole site; a __Host- cookie must have Path=/.
_HTTP_PATHS = {LOGIN_CSRF: "/login", UPSTREAM_STATE: "/login/upstream"}


def name(settings: Settings, base: str) -> str:
    return HOST_PREFIX + base if settings.secure_cookies else base


def path(settings: Settings, base: str) -> str:
    return "/" if settings.secure_cookies else _HTTP_PATHS.get(base, "/")


def read(conn: HTTPConnection, settings: Settings, base: str) -> str | None:
    return conn.cookies.get(name(settings, base))


def put(
    response: Response, settings: Settings, base: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name(settings, base),
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path=path(settings, base),
    )


def clear(response: Response, settings: Settings, base: str) -> None:
    # With the same attributes: a browser drops a __Host- cookie only on a Secure Set-Cookie.
    response.delete_cookie(
        name(settings, base),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path=path(settings, base),
    )
