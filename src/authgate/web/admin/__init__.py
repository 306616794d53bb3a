"""The management API (mounted at ``/api/v2``): apps, users, API tokens, resources, signing
keys, the audit log and the flow timeline.

Endpoints authenticate through ``authgate.web.deps``, call one ``authgate.core`` function and
render its result with ``schemas``; errors are raised as ``core.errors.ManagementError`` and
rendered as ``application/problem+json`` by ``authgate.web.errors``.
"""

from __future__ import annotations

from fastapi import APIRouter

from authgate.schemas import PROBLEM_RESPONSES
from authgate.web.admin import (
    apps,
    audit,
    client_profiles,
    flows,
    keys,
    resources,
    settings,
    tokens,
    upstream,
    users,
)

router = APIRouter(responses=PROBLEM_RESPONSES)
router.include_router(apps.router)
# /users/me/tokens before /users/{user}: a fixed path must win over a parameter.
router.include_router(tokens.router)
router.include_router(users.router)
router.include_router(resources.router)
router.include_router(keys.router)
router.include_router(audit.router)
router.include_router(flows.router)
router.include_router(settings.router)
router.include_router(client_profiles.router)
router.include_router(upstream.router)

__all__ = ["router"]
