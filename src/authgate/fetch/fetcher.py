"""``HttpsFetcher``: the SSRF-safe ``DocumentFetcher`` (Client ID Metadata Documents, jwks_uri).

Rules, in order: https only; the host resolves (``socket.getaddrinfo``, done here) only to
public addresses, or is allow-listed; the connection goes to the address that was checked
(``transport.PinnedTransport``), so DNS cannot change the answer in between; no redirect is
followed; the whole exchange, name resolution included, has a deadline; at most
``max_bytes`` are read; the body must be declared JSON. Every failure is a ``FetchError``
whose message is safe to show the client.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx

from authgate.core.ports import FetchedDocument, FetchError, HttpAnswer
from authgate.fetch.addresses import AllowList, IPAddress, permitted
from authgate.fetch.transport import PinnedTransport

log = logging.getLogger(__name__)

T = TypeVar("T")
Resolver = Callable[..., Sequence[tuple[Any, ...]]]
USER_AGENT = "authgate (client metadata fetcher)"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:,|$|=)", re.IGNORECASE)


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def max_age(cache_control: str | None) -> int | None:
    """Seconds from ``Cache-Control`` (0 for no-store/no-cache), None if it says nothing."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0
    match = _MAX_AGE.search(cache_control)
    return min(int(match.group(1)), 2**31) if match else None


@functools.lru_cache(maxsize=8)
def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One verifying TLS context per CA bundle and process: loading the trust store takes tens
    of milliseconds, and a context is safe to share between threads."""
    return ssl.create_default_context(cafile=ca_bundle)


class HttpsFetcher:
    def __init__(
        self,
        *,
        allow: AllowList | None = None,
        ca_bundle: str | None = None,
        connect_timeout: float = 2.0,
        total_timeout: float = 5.0,
        max_bytes: int = 64 * 1024,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.allow = allow or AllowList()
        # Verification is never off: a test or a private CA gives its own bundle.
        self._ssl = _tls_context(ca_bundle or None)
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self._resolve = resolve

    def fetch(self, url: str, source: str | None = None) -> FetchedDocument:
        """``source`` is for the pool in front of this fetcher (``pool.FetchPool``)."""
        headers = {"Accept": "application/json"}
        return self._exchange("GET", url, headers, None, lambda r: self._read(url, r))

    def send(
        self, method: str, url: str, *, headers: dict[str, str], form: dict[str, str] | None
    ) -> HttpAnswer:
        """One back-channel request to an upstream OpenID Provider (a form POST to its token
        endpoint, a GET of UserInfo) under the same rules; the answer whatever its status
        (an OAuth error is a JSON body too), the body capped at ``max_bytes``."""
        return self._exchange(method, url, headers, form, self._answer)

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        form: dict[str, str] | None,
        read: Callable[[httpx.Response], T],
    ) -> T:
        deadline = time.monotonic() + self.total_timeout
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError("the URL is not valid") from exc
        if parsed.scheme != "https" or not parsed.host:
            raise FetchError("only https URLs are fetched")
        host = parsed.host
        port = parsed.port or 443
        # The deadline runs from the start: a slow name server spends the fetch's time too
        # (the pool's caller stops waiting at the deadline even while the lookup still runs).
        addresses = self._checked_addresses(host, port)
        if time.monotonic() >= deadline:
            raise FetchError("the server did not answer in time")
        timeout = httpx.Timeout(self.total_timeout, connect=self.connect_timeout)
        transport = PinnedTransport(host, addresses, self._ssl, deadline)
        sent = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **headers}
        try:
            with (
                httpx.Client(
                    transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
                ) as client,
                client.stream(method, url, headers=sent, data=form) as response,
            ):
                return read(response)
        except httpx.TimeoutException as exc:
            raise FetchError("the server did not answer in time") from exc
        except httpx.HTTPError as exc:
            if _caused_by(exc, ssl.SSLCertVerificationError):
                raise FetchError("the server's TLS certificate could not be verified") from exc
            log.info("fetch of %s failed: %s", url, exc)
            raise FetchError("the server could not be reached") from exc

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once; the addresses to connect to, if every one may be fetched."""
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise FetchError("the host name could not be resolved") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            try:
                addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise FetchError("the host name could not be resolved")
        # One bad answer taints the name: a rebinding attacker mixes public and private ones.
        for ip in addresses:
            if not permitted(ip, host, self.allow):
                raise FetchError("the host resolves to an address that may not be fetched")
        return [str(ip) for ip in dict.fromkeys(addresses)]

    def _body(self, response: httpx.Response) -> bytes:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError("the document must not be compressed")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"the document is larger than {self.max_bytes} bytes")
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"the document is larger than {self.max_bytes} bytes")
        return bytes(body)

    def _answer(self, response: httpx.Response) -> HttpAnswer:
        if 300 <= response.status_code < 400:
            raise FetchError(f"the server answered with a redirect ({response.status_code})")
        return HttpAnswer(
            status=response.status_code,
            body=self._body(response),
            content_type=response.headers.get("content-type", ""),
        )

    def _read(self, url: str, response: httpx.Response) -> FetchedDocument:
        if 300 <= response.status_code < 400:
            raise FetchError(f"the server answered with a redirect ({response.status_code})")
        if response.status_code != 200:
            raise FetchError(f"the server answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        if not is_json(content_type):
            raise FetchError("the document is not served as application/json")
        return FetchedDocument(
            url=url,
            body=self._body(response),
            content_type=content_type,
            max_age=max_age(response.headers.get("cache-control")),
        )
