"""Structured logging: one JSON object per line on stderr, with the request id when known.

Nothing secret is logged: the access log records paths without query strings, and OAuth
errors log their operator-only ``debug`` text, which never contains a credential.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"color_message"}
# Set by the web middleware for the duration of a request (worker threads inherit it).
REQUEST_ID: ContextVar[str | None] = ContextVar("authgate_request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        # The access log already hands us a JSON object: merge it rather than nest a string.
        if message.startswith("{"):
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["message"] = message
        else:
            entry["message"] = message
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would print full URLs (query strings included): ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
