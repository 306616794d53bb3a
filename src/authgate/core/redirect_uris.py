"""redirect_uri registration rules and matching (RFC 6749 §3.1.2, OAuth 2.1 §2.3.1, RFC 8252 §7.3).

"Authorization servers MUST compare and match redirect URI using exact string matching" (OAuth 2.1
§4.1.1), except that for loopback redirects "the authorization server MUST allow any port to be
specified at the time of the request" (RFC 8252 §7.3).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

import idna

from authgate.core.errors import InvalidRedirectUriError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
DANGEROUS_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "ftp", "about", "blob", "filesystem", "view-source"}
)
PUBLIC_FORBIDDEN_SCHEMES = frozenset({"mailto", "tel", "sms"})
MAX_URIS = 32
MAX_URI_LENGTH = 2048
# RFC 3986 §3.1 scheme; a host in ASCII after IDNA: letters, digits, hyphens and dots.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_ASCII_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.?")


def _split(uri: str) -> SplitResult | None:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def _netloc_host(parts: SplitResult) -> str:
    host = parts.netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.split(":", 1)[0].lower()


def is_loopback(uri: str) -> bool:
    parts = _split(uri)
    return parts is not None and parts.scheme == "http" and _netloc_host(parts) in LOOPBACK_HOSTS


def _ascii_host(parts: SplitResult) -> str | None:
    """The host as a browser sends it: an IP address (IPv6 in brackets) or the IDNA 2008 /
    UTS #46 form of a name (``bücher.example`` → ``xn--bcher-kva.example``); None if it is
    neither."""
    host = parts.hostname or ""
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    try:
        ascii_host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return ascii_host if _ASCII_HOST.fullmatch(ascii_host) else None


def ascii_origin(uri: str) -> str | None:
    """The CSP source expression for the place ``uri`` sends the browser (CSP3 §2.3.1):
    ``https://host[:port]`` in ASCII, or ``scheme:`` for a private-use scheme; None when the
    URI has no valid host (then it can be no redirect target: nothing unchecked may reach a
    response header)."""
    parts = _split(uri)
    scheme = parts.scheme.lower() if parts is not None else ""
    if parts is None or not _SCHEME.fullmatch(scheme):
        return None
    if scheme not in ("http", "https"):
        return f"{scheme}:"
    host = _ascii_host(parts)
    if host is None:
        return None
    return f"{scheme}://{host}" + (f":{parts.port}" if parts.port is not None else "")


def validate_redirect_uri(uri: str, *, public: bool) -> str:
    """Check one URI at registration; returns it unchanged or raises invalid_redirect_uri."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise InvalidRedirectUriError("redirect_uri must be 1 to 2048 characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri):
        raise InvalidRedirectUriError("redirect_uri must not contain spaces or control characters")
    parts = _split(uri)
    if parts is None or not parts.scheme:
        raise InvalidRedirectUriError("redirect_uri must be an absolute URI")
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        raise InvalidRedirectUriError("redirect_uri must not contain a fragment")
    _check_scheme(scheme, parts, public=public)
    if parts.username or parts.password:
        raise InvalidRedirectUriError("redirect_uri must not contain user information")
    if ascii_origin(uri) is None:
        raise InvalidRedirectUriError("redirect_uri must have a valid host name or IP address")
    return uri


def _check_scheme(scheme: str, parts: SplitResult, *, public: bool) -> None:
    """What the scheme allows: never a dangerous one; https with a host; http on loopback
    only; a private-use scheme with a path or authority."""
    if scheme in DANGEROUS_SCHEMES or (public and scheme in PUBLIC_FORBIDDEN_SCHEMES):
        raise InvalidRedirectUriError(f"The {scheme}: scheme is not allowed for redirect_uri")
    if scheme == "https":
        if not parts.netloc:
            raise InvalidRedirectUriError("An https redirect_uri must have a host")
    elif scheme == "http":
        # OAuth 2.1 §2.3.1: http only for loopback (native apps on the same machine).
        if _netloc_host(parts) not in LOOPBACK_HOSTS:
            raise InvalidRedirectUriError(
                "http redirect_uri is only allowed for localhost, 127.0.0.1 and [::1]"
            )
    elif not (parts.netloc or parts.path):
        # Private-use schemes (RFC 8252 §7.1) need a path or authority: `cursor://anysphere/cb`.
        raise InvalidRedirectUriError("A private-use redirect_uri needs a path")


def validate_redirect_uris(uris: Sequence[str], *, public: bool) -> tuple[str, ...]:
    if not uris:
        raise InvalidRedirectUriError("At least one redirect_uri is required")
    if len(uris) > MAX_URIS:
        raise InvalidRedirectUriError(f"At most {MAX_URIS} redirect URIs may be registered")
    checked = tuple(validate_redirect_uri(u, public=public) for u in uris)
    if len(set(checked)) != len(checked):
        raise InvalidRedirectUriError("redirect_uris contains duplicates")
    return checked


def _without_port(parts: SplitResult) -> SplitResult:
    return parts._replace(netloc=_netloc_host(parts))


def matches(registered: str, requested: str) -> bool:
    """Exact string match; for http loopback hosts the port alone may differ (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    if not (is_loopback(registered) and is_loopback(requested)):
        return False
    reg, req = _split(registered), _split(requested)
    assert reg is not None and req is not None
    # Same host on both sides (127.0.0.1 is not localhost), same path, query and fragment.
    return _without_port(reg) == _without_port(req) and "@" not in req.netloc


def resolve(registered: Sequence[str], requested: str | None) -> str | None:
    """The redirect URI to use, or None if the request names none of the registered ones.

    Without a requested URI, the only registered one is used; "if multiple redirect URIs have
    been registered, the client MUST include a redirect URI" (OAuth 2.1 §2.3.2)."""
    if requested is None:
        return registered[0] if len(registered) == 1 else None
    for uri in registered:
        if matches(uri, requested):
            return requested
    return None
