"""Jinja2 rendering of the pages, with autoescaping and the page security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def content_security_policy(form_action: str = "'self'") -> str:
    return (
        "default-src 'none'; style-src 'self'; img-src 'self' https: data:; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    form_action: str = "'self'",
) -> HTMLResponse:
    rid = request.scope.get("state", {}).get("request_id")
    body = _ENV.get_template(template).render(request_id=rid, **context)
    headers = dict(PAGE_HEADERS)
    headers["Content-Security-Policy"] = content_security_policy(form_action)
    return HTMLResponse(body, status_code=status, headers=headers)
