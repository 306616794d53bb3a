"""``/branding.css``: the operator's accent colour as a stylesheet (no inline style is allowed
by the pages' Content-Security-Policy)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authgate.web.templating import Branding


async def stylesheet(request: Request) -> Response:
    brand: Branding = request.app.state.branding
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response(brand.stylesheet(), media_type="text/css", headers=headers)
