"""The HTTP client and response types a test meets, whichever httpx generation made them.

Starlette's TestClient is built on httpx2 (its types always name it), while the tests against a
live `authgate serve`, Authlib and authgate's own fetcher speak httpx. A helper that sends a
request or reads a response (status, headers, body) works with either, so it takes these
unions rather than one generation's class.
"""

from __future__ import annotations

from typing import TypeAlias

import httpx
import httpx2

Response: TypeAlias = httpx.Response | httpx2.Response
HttpClient: TypeAlias = httpx.Client | httpx2.Client
