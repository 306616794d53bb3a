"""Jinja2 rendering of the pages, with autoescaping, branding and the page security headers.

Every page goes through ``render``: it sets a strict Content-Security-Policy (scripts only from
``/static``, no inline script or style), ``frame-ancestors 'none'`` and ``X-Frame-Options``,
``no-referrer``, ``nosniff`` and ``Cache-Control: no-store`` (pages may show secrets, CSRF
tokens and who is signed in). An operator's template directory overrides any page by name; the
built-in templates stay reachable as ``authgate/<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    select_autoescape,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"

PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Branding:
    """What an operator sets about how the pages look (config.py ``brand_*``)."""

    name: str = "authgate"
    logo_url: str = ""
    accent: str = "#2457d6"
    support_url: str = ""

    @property
    def accent_text(self) -> str:
        """Black or white, whichever contrasts more with the accent (WCAG 2.1 §1.4.3)."""
        channels = [int(self.accent[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        on_white = 1.05 / (luminance + 0.05)
        on_black = (luminance + 0.05) / 0.05
        return "#ffffff" if on_white >= on_black else "#000000"

    def stylesheet(self) -> str:
        return f":root {{ --accent: {self.accent}; --accent-text: {self.accent_text}; }}\n"


def environment(template_dir: str | Path | None = None) -> Environment:
    """The page templates: the operator's directory first, then the built-in ones."""
    builtin = FileSystemLoader(BUILTIN_TEMPLATES)
    loaders: list[BaseLoader] = [builtin]
    if template_dir:
        loaders.insert(0, FileSystemLoader(template_dir))
    loaders.append(PrefixLoader({"authgate": builtin}))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        # Each template is read once per process: with reloading on, every page (and every
        # refused sign-in of a flood) asked the file system whether each file had changed.
        auto_reload=False,
    )
    # One path segment: an app id may be an https URL (a metadata-document client).
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    return env


_DEFAULT_ENV = environment()


# Source expressions only: a ";" or "," would start another directive or policy, and a header
# value must be ASCII.
_SOURCE_LIST = re.compile(r"[\x21-\x2b\x2d-\x3a\x3c-\x7e]+( [\x21-\x2b\x2d-\x3a\x3c-\x7e]+)*")


def content_security_policy(form_action: str = "'self'") -> str:
    if not _SOURCE_LIST.fullmatch(form_action):
        form_action = "'self'"  # core never gives such a value; a header never carries it
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
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
    state = request.app.state
    env: Environment = getattr(state, "templates", _DEFAULT_ENV)
    brand: Branding = getattr(state, "branding", Branding())
    rid = request.scope.get("state", {}).get("request_id")
    values = {"request_id": rid, "brand": brand, "path": request.url.path, **context}
    body = env.get_template(template).render(**values)
    headers = dict(PAGE_HEADERS)
    headers["Content-Security-Policy"] = content_security_policy(form_action)
    return HTMLResponse(body, status_code=status, headers=headers)
