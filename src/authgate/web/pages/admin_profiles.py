"""Admin console: known-client profiles (``/admin/profiles``) and "test this client"
(``/admin/test-client``), through the core functions the API and the CLI call."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from authgate.core import client_check, client_profiles
from authgate.core.accounts import SignedIn
from authgate.core.client_check import Report
from authgate.core.errors import ManagementError, ValidationFailed
from authgate.web import deps
from authgate.web.pages import common


async def _profiles_page(
    request: Request,
    who: SignedIn,
    *,
    values: dict[str, str] | None = None,
    failure: ManagementError | None = None,
) -> Response:
    found = await run_in_threadpool(client_profiles.all_profiles, deps.ctx_of(request))
    return common.page(
        request,
        "admin_profiles.html",
        who,
        status=failure.status if failure else 200,
        profiles=found,
        values=values or {},
        failure=failure,
    )


async def list_profiles(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _profiles_page(request, who)


def _json_field(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(
            f"Invalid {field}: not JSON", validations={field: "a JSON value"}
        ) from exc


async def save_profile(request: Request) -> Response:
    """Add or override a profile from its JSON (the API's PUT body); or, with ``pin`` set,
    pin the document in ``document`` (or, when empty, the one fetched now)."""
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    ctx, actor = deps.ctx_of(request), common.actor(request, who)
    profile_id = common.text(form, "profile_id")
    values = {"profile_id": profile_id, "profile": common.text(form, "profile")}
    try:
        body = _json_field(values["profile"], "profile")
    except ValidationFailed as exc:
        return await _profiles_page(request, who, values=values, failure=exc)
    saved = await common.attempt(client_profiles.save, ctx, actor, profile_id, body)
    if isinstance(saved, ManagementError):
        return await _profiles_page(request, who, values=values, failure=saved)
    return common.done("/admin/profiles", "profile-saved")


async def pin_profile(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    ctx, actor = deps.ctx_of(request), common.actor(request, who)
    profile_id = request.path_params["profile_id"]
    text = common.text(form, "document")
    result: Any
    if text:
        try:
            document = _json_field(text, "document")
        except ValidationFailed as exc:
            return await _profiles_page(request, who, failure=exc)
        if not isinstance(document, dict):
            failure = ValidationFailed(
                "Invalid document: a JSON object", validations={"document": "a JSON object"}
            )
            return await _profiles_page(request, who, failure=failure)
        result = await common.attempt(client_profiles.pin, ctx, actor, profile_id, document)
    else:
        result = await common.attempt(client_check.pin_live, ctx, actor, profile_id)
    if isinstance(result, ManagementError):
        return await _profiles_page(request, who, failure=result)
    return common.done("/admin/profiles", "profile-pinned")


async def delete_profile(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    ctx, actor = deps.ctx_of(request), common.actor(request, who)
    profile_id = request.path_params["profile_id"]
    done = await common.attempt(client_profiles.delete, ctx, actor, profile_id)
    if isinstance(done, ManagementError):
        return await _profiles_page(request, who, failure=done)
    return common.done("/admin/profiles", "profile-deleted")


# Test this client


async def _test_page(
    request: Request,
    who: SignedIn,
    *,
    values: dict[str, str] | None = None,
    report: Report | None = None,
    failure: ManagementError | None = None,
) -> Response:
    return common.page(
        request,
        "admin_test_client.html",
        who,
        status=failure.status if failure else 200,
        values=values or {"app_id": request.query_params.get("app_id", "")},
        report=report,
        grouped=report.grouped() if report else [],
        failure=failure,
    )


async def show_test_client(request: Request) -> Response:
    who = await common.admin_page(request)
    if not isinstance(who, SignedIn):
        return who
    return await _test_page(request, who)


async def test_client(request: Request) -> Response:
    checked = await common.admin_form(request)
    if isinstance(checked, Response):
        return checked
    who, form = checked
    values = {k: common.text(form, k) for k in ("document_url", "registration", "app_id")}
    try:
        body = (
            _json_field(values["registration"], "registration") if values["registration"] else None
        )
    except ValidationFailed as exc:
        return await _test_page(request, who, values=values, failure=exc)
    report = await common.attempt(
        client_check.check,
        deps.ctx_of(request),
        document_url=values["document_url"] or None,
        registration_body=body,
        app_id=values["app_id"] or None,
    )
    if isinstance(report, ManagementError):
        return await _test_page(request, who, values=values, failure=report)
    return await _test_page(request, who, values=values, report=report)
