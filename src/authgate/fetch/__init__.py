"""Fetching client-supplied URLs (metadata documents, ``jwks_uri``) without SSRF.

This package implements ``authgate.core.ports.DocumentFetcher`` and imports nothing of
authgate but those port types. It may only make outbound https requests to addresses that
pass ``addresses.check``; it never follows redirects and never reads past a size cap, and
it fetches on its own bounded threads (``pool.FetchPool``), never on a request's.
"""

from authgate.fetch.addresses import AllowList, is_public
from authgate.fetch.fetcher import HttpsFetcher
from authgate.fetch.pool import FetchPool
from authgate.fetch.upstream import UpstreamClient

__all__ = ["AllowList", "FetchPool", "HttpsFetcher", "UpstreamClient", "is_public"]
