"""Fuzzing budget and Hypothesis settings shared by tests/fuzz.

CI runs a bounded, derandomized budget (``EXAMPLES`` per endpoint on SQLite, a fifth of it on
PostgreSQL); a longer run sets ``AUTHGATE_FUZZ_EXAMPLES=2000``. Hypothesis keeps nothing in the
repository: no example database, and its storage directory is under the temp dir.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from authgate.core.upstream.providers import ProviderSpec

os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "authgate-hypothesis")
)

EXAMPLES = int(os.environ.get("AUTHGATE_FUZZ_EXAMPLES", "50"))

#: An upstream provider with a ``private_key_jwt`` key, so the fuzzers reach the routes of
#: its key (its JWKS, its certificate, rotation).
KEYED_PROVIDER = ProviderSpec(
    id="keyed",
    display_name="Keyed",
    issuer="https://idp.example.com",
    client_id="authgate-keyed",
    token_auth_method="private_key_jwt",
)


def budget(database_url: str, examples: int = EXAMPLES) -> settings:
    """Deterministic settings: the same examples on every run, no deadline, no database."""
    if database_url.startswith("postgresql"):
        examples = max(5, examples // 5)
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def refused_for_nul(resp: Any) -> bool:
    """Whether ``resp`` is the middleware's refusal of a NUL in the URL (web/middleware.py): the
    same 400 ``invalid_request`` JSON on every surface, before any route runs, so the
    authorization page and the management API answer it in the OAuth shape too."""
    url = resp.request.url
    if "\x00" not in url.path and b"%00" not in url.query.lower():
        return False
    assert resp.status_code == 400, resp.text
    assert resp.headers["cache-control"] == "no-store"
    if resp.request.method != "HEAD":
        assert resp.json()["error"] == "invalid_request", resp.text
    return True
