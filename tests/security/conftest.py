"""Fixtures of the attack catalogue: ``live``, a running authgate on a loopback port."""

from tests.security.live import live

__all__ = ["live"]
