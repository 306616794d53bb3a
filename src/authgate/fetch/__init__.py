"""Fetching client-supplied URLs (metadata documents, ``jwks_uri``) without SSRF.

This package implements ``authgate.core.ports.DocumentFetcher`` and imports nothing of
authgate but those port types. It may only make outbound https requests to addresses that
pass ``addresses.check``; it never follows redirects and never reads past a size cap.
"""

from authgate.fetch.addresses import AllowList, is_public
from authgate.fetch.fetcher import HttpsFetcher

__all__ = ["AllowList", "HttpsFetcher", "is_public"]
