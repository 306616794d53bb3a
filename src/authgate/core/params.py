"""Request parameters as the protocol sees them (RFC 6749 §3.1, §3.2).

"Request and response parameters MUST NOT be included more than once" (RFC 6749 §3.1);
unknown parameters are ignored, so a repetition is an error only for a parameter that is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from authgate.core.errors import (
    InvalidRequestError,
    InvalidTargetError,
    OAuthError,
)

MAX_PARAM_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Params:
    """Request parameters: the first value of each name, and the names that were repeated."""

    values: Mapping[str, str]
    repeated: frozenset[str] = frozenset()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Params:
        seen: dict[str, str] = {}
        repeated: set[str] = set()
        for name, value in pairs:
            if name in seen:
                repeated.add(name)
            else:
                seen[name] = value
        return cls(seen, frozenset(repeated))

    def _repeated_error(self, name: str) -> OAuthError:
        # grant_type too: RFC 6749 §5.2 names "includes a parameter more than once" as
        # invalid_request, whichever parameter it is.
        if name == "resource":
            # RFC 8707 allows several resources; authgate binds a token to exactly one audience.
            return InvalidTargetError("Only one resource may be requested at a time")
        return InvalidRequestError(f"The {name} parameter was repeated")

    def get(self, name: str) -> str | None:
        """The value, with an empty string treated as absent (RFC 6749 §3.1)."""
        if name in self.repeated:
            raise self._repeated_error(name)
        value = self.values.get(name)
        if value and len(value) > MAX_PARAM_LENGTH:
            raise InvalidRequestError(f"The {name} parameter is too long")
        return value if value else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidRequestError(f"Missing required parameter: {name}")
        return value
