"""Management API for known-client profiles (``/client-profiles``) and "test this client"
(``/client-check``). The rules live in ``core.client_profiles`` and ``core.client_check``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from authgate.core import client_check, client_profiles
from authgate.core.client_profiles import Profile
from authgate.web.admin.auth import Admin, Ctx, actor

router = APIRouter(tags=["client profiles"])


class ProfileOut(BaseModel):
    id: str
    name: str
    document_urls: list[str] = Field(description="Client ID Metadata Document URLs")
    redirect_hosts: list[str] = Field(
        description="Hosts and private-use schemes (`cursor:`) its redirect URIs use"
    )
    redirect_uris: list[str] = Field(description="Redirect URIs it is known to use")
    client_names: list[str] = Field(description="Prefixes of the names it registers under")
    quirks: list[str]
    sources: list[str] = Field(description="Where this knowledge comes from")
    pinned_document: dict[str, Any] | None = Field(
        description="The copy of its document used only when the live fetch fails"
    )
    pinned_note: str
    origin: str = Field(description="`shipped`, `operator` or `overridden` (a shipped id)")

    @classmethod
    def of(cls, profile: Profile) -> ProfileOut:
        return cls(**profile.as_json())


class ProfileIn(BaseModel):
    """A whole profile (PUT replaces the operator's profile of this id)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    document_urls: list[str] = Field(default_factory=list)
    redirect_hosts: list[str] = Field(default_factory=list)
    redirect_uris: list[str] = Field(default_factory=list)
    client_names: list[str] = Field(default_factory=list)
    quirks: list[str] = Field(default_factory=list)
    sources: list[str] = Field(description="At least one: where this knowledge comes from")
    pinned_document: dict[str, Any] | None = None
    pinned_note: str = ""


class PinIn(BaseModel):
    """``document``: the copy to pin; omitted = fetch the profile's document URL now."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] | None = None
    url: str | None = Field(None, description="Which of the profile's document URLs to fetch")


class FindingOut(BaseModel):
    outcome: str = Field(description="`accept`, `drop`, `narrow`, `refuse` or `note`")
    field: str
    message: str


class ClientCheckIn(BaseModel):
    """Exactly one of the three."""

    model_config = ConfigDict(extra="forbid")

    document_url: str | None = Field(None, description="A Client ID Metadata Document URL")
    registration: dict[str, Any] | None = Field(
        None, description="A registration request body (RFC 7591 §2)"
    )
    app_id: str | None = Field(None, description="An existing app's client_id")


class ClientCheckOut(BaseModel):
    kind: str
    target: str
    verdict: str = Field(description="`accepted` or `refused`")
    profile: str | None
    profile_name: str | None
    pinned_copy_used: bool
    registered: dict[str, Any] = Field(description="What would be registered (when accepted)")
    findings: list[FindingOut]


@router.get("/client-profiles", response_model=list[ProfileOut])
def list_profiles(ctx: Ctx, who: Admin) -> list[ProfileOut]:
    """Every known-client profile: the operator's first, then the shipped ones."""
    return [ProfileOut.of(p) for p in client_profiles.all_profiles(ctx)]


@router.get("/client-profiles/{profile_id}", response_model=ProfileOut)
def get_profile(ctx: Ctx, who: Admin, profile_id: str) -> ProfileOut:
    return ProfileOut.of(client_profiles.get(ctx, profile_id))


@router.put("/client-profiles/{profile_id}", response_model=ProfileOut)
def save_profile(
    ctx: Ctx, who: Admin, request: Request, profile_id: str, body: ProfileIn
) -> ProfileOut:
    """Add a profile or override a shipped one; audited as `client_profile.saved`."""
    saved = client_profiles.save(ctx, actor(request, who), profile_id, body.model_dump())
    return ProfileOut.of(saved)


@router.post("/client-profiles/{profile_id}/pin", response_model=ProfileOut)
def pin_profile(ctx: Ctx, who: Admin, request: Request, profile_id: str, body: PinIn) -> ProfileOut:
    """Pin a copy of the profile's document (given, or fetched now); audited as
    `client_profile.pinned`."""
    if body.document is not None:
        pinned = client_profiles.pin(ctx, actor(request, who), profile_id, body.document)
    else:
        pinned = client_check.pin_live(ctx, actor(request, who), profile_id, body.url)
    return ProfileOut.of(pinned)


@router.delete("/client-profiles/{profile_id}", status_code=204)
def delete_profile(ctx: Ctx, who: Admin, request: Request, profile_id: str) -> None:
    """Remove the operator's profile (a shipped one of this id applies again)."""
    client_profiles.delete(ctx, actor(request, who), profile_id)


@router.post("/client-check", response_model=ClientCheckOut)
def check_client(ctx: Ctx, who: Admin, body: ClientCheckIn) -> ClientCheckOut:
    """Test this client: what authgate will accept, drop or narrow, and refuse, and why.
    Nothing is stored."""
    report = client_check.check(
        ctx,
        document_url=body.document_url,
        registration_body=body.registration,
        app_id=body.app_id,
    )
    return ClientCheckOut.model_validate(report.as_json())
