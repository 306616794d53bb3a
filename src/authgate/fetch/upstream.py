"""``UpstreamClient``: the ``UpstreamHttp`` port on the SSRF-safe fetcher and its bounded pool.

An upstream OpenID Provider is named by an operator, not a stranger, but its discovery
document names further URLs (token endpoint, JWKS, UserInfo) and a provider that is down must
not hold request threads: so every back-channel request runs like a document fetch, on the
pool's own threads, under the same deadline, size cap and address rules.
"""

from __future__ import annotations

from authgate.core.ports import FetchedDocument, HttpAnswer
from authgate.fetch.fetcher import HttpsFetcher
from authgate.fetch.pool import FetchPool


class UpstreamClient:
    def __init__(self, fetcher: HttpsFetcher, pool: FetchPool) -> None:
        self._fetcher = fetcher
        self._pool = pool

    def get_json(self, url: str) -> FetchedDocument:
        return self._pool.fetch(url)

    def send(
        self, method: str, url: str, *, headers: dict[str, str], form: dict[str, str] | None
    ) -> HttpAnswer:
        def call() -> HttpAnswer:
            return self._fetcher.send(method, url, headers=headers, form=form)

        return self._pool.run(url, None, call)
