"""``authgate profiles``: the known-client profiles (list, show, set, pin, delete), and
``authgate test-client``: what authgate will accept, drop or narrow, and refuse for a
metadata document URL, a registration body (a JSON file) or an existing app.

The same ``core.client_profiles`` / ``core.client_check`` functions as ``/api/v2/client-profiles``
and ``/api/v2/client-check``, acting as ``system``; ``--json`` prints the API's JSON shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from authgate.cli.common import emit, fields, json_option, open_context, table
from authgate.core import client_check, client_profiles
from authgate.core.client_check import Report
from authgate.core.client_profiles import Profile
from authgate.core.context import SYSTEM


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"Cannot read JSON from {path}: {exc}") from exc


def _describe(profile: Profile) -> str:
    text = fields(
        [
            ("Id", profile.id),
            ("Name", profile.name),
            ("Origin", profile.origin),
            ("Document URLs", ", ".join(profile.document_urls) or "(none)"),
            ("Redirect hosts", ", ".join(profile.redirect_hosts) or "(none)"),
            ("Redirect URIs", ", ".join(profile.redirect_uris) or "(none)"),
            ("Registers as", ", ".join(profile.client_names) or "(any name)"),
            ("Pinned copy", "yes" if profile.pinned_document is not None else "no"),
        ]
    )
    quirks = "".join(f"\n  - {q}" for q in profile.quirks)
    sources = "".join(f"\n  - {s}" for s in profile.sources)
    return f"{text}\nQuirks:{quirks or ' (none)'}\nSources:{sources}"


@click.group()
def profiles() -> None:
    """Known-client profiles: document URLs, redirect hosts, quirks, pinned documents."""


@profiles.command("list")
@json_option
def list_profiles(as_json: bool) -> None:
    """List every profile (the operator's first)."""
    found = client_profiles.all_profiles(open_context())
    rows = [
        [p.id, p.name, p.origin, "yes" if p.pinned_document is not None else "no"] for p in found
    ]
    emit(
        as_json,
        [p.as_json() for p in found],
        lambda: table(["ID", "NAME", "ORIGIN", "PINNED"], rows),
    )


@profiles.command()
@click.argument("profile_id")
@json_option
def show(profile_id: str, as_json: bool) -> None:
    """Show one profile."""
    profile = client_profiles.get(open_context(), profile_id)
    emit(as_json, profile.as_json(), lambda: _describe(profile))


@profiles.command("set")
@click.argument("profile_id")
@click.option(
    "--file", "path", required=True, help="A JSON file with the whole profile (as the API's PUT)."
)
@json_option
def set_profile(profile_id: str, path: str, as_json: bool) -> None:
    """Add a profile, or override the shipped one of this id."""
    profile = client_profiles.save(open_context(), SYSTEM, profile_id, _read_json(path))
    emit(as_json, profile.as_json(), lambda: f"Saved.\n{_describe(profile)}")


@profiles.command()
@click.argument("profile_id")
@click.option("--file", "path", help="Pin this JSON document instead of fetching it now.")
@click.option("--url", help="Which of the profile's document URLs to fetch.")
@json_option
def pin(profile_id: str, path: str | None, url: str | None, as_json: bool) -> None:
    """Pin a copy of the profile's metadata document (fetched now, or from --file)."""
    ctx = open_context()
    if path is not None:
        document = _read_json(path)
        if not isinstance(document, dict):
            raise click.ClickException("The document must be a JSON object")
        profile = client_profiles.pin(ctx, SYSTEM, profile_id, document)
    else:
        profile = client_check.pin_live(ctx, SYSTEM, profile_id, url)
    emit(as_json, profile.as_json(), lambda: f"Pinned.\n{_describe(profile)}")


@profiles.command()
@click.argument("profile_id")
@json_option
def delete(profile_id: str, as_json: bool) -> None:
    """Remove the operator's profile (a shipped one of this id applies again)."""
    client_profiles.delete(open_context(), SYSTEM, profile_id)
    emit(
        as_json,
        {"id": profile_id, "deleted": True},
        f"Deleted the operator's profile {profile_id}.",
    )


def explain(report: Report) -> str:
    """The report in plain words, grouped by outcome."""
    lines = [f"{report.target}: {report.verdict.upper()}"]
    if report.profile is not None:
        lines.append(f"Known client: {report.profile.name} ({report.profile.id})")
    if report.pinned_copy_used:
        lines.append("The live document could not be fetched: the pinned copy was checked.")
    for heading, messages in report.grouped():
        lines.append(f"{heading}:")
        lines.extend(f"  - {m}" for m in messages)
    return "\n".join(lines)


@click.command("test-client")
@click.argument("target")
@json_option
def test_client(target: str, as_json: bool) -> None:
    """Explain what authgate will accept, drop and refuse for TARGET: an https document URL, a
    JSON file holding a registration body, or an app id. Exits 1 when it would be refused."""
    ctx = open_context()
    if target.startswith("https://") and ctx.store.get_app(target) is None:
        report = client_check.check(ctx, document_url=target)
    elif Path(target).is_file():
        report = client_check.check(ctx, registration_body=_read_json(target))
    else:
        report = client_check.check(ctx, app_id=target)
    emit(as_json, report.as_json(), lambda: explain(report))
    if report.verdict == "refused":
        raise SystemExit(1)
