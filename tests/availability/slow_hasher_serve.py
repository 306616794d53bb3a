"""``authgate`` with a slowed password hasher: the real Argon2id, then a pause of
``SLOW_HASH_SECONDS`` (default 0.3) per check, so that a few dozen sign-ins outlast the
request threads on any machine. Run as ``python -m tests.availability.slow_hasher_serve serve
…`` from the repository root; everything else is the real server."""

from __future__ import annotations

import os
import time
from typing import Any

from argon2 import PasswordHasher

from authgate.cli.main import main
from authgate.crypto import passwords


class SlowHasher(PasswordHasher):
    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        try:
            return super().verify(hash, password)
        finally:
            time.sleep(float(os.environ.get("SLOW_HASH_SECONDS", "0.3")))


if __name__ == "__main__":
    passwords._HASHER = SlowHasher()
    main()
