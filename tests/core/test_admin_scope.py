"""core/admin_scope.py: authgate's own `admin` scope only for apps an operator marked."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from authgate.core import admin_scope, clients, resources
from authgate.core.context import SYSTEM, Context
from authgate.core.errors import InvalidScopeError, ValidationFailed
from authgate.core.models import App
from authgate.core.policy import Policy
from tests.clock import MovableClock
from tests.fakes import InMemoryStore

ISSUER = "https://auth.example.com"
OTHER = "https://api.example.com"


@pytest.fixture
def ctx() -> Context:
    context = Context(InMemoryStore(), MovableClock(), Policy(issuer=ISSUER), b"k" * 32)
    resources.ensure_own_api(context)
    return context


def _app(ctx: Context, **fields: object) -> App:
    values: dict[str, Any] = {"name": "Ops", "redirect_uris": ["https://ops.example.com/cb"]}
    values.update(fields)
    return clients.create_app(ctx, SYSTEM, clients.AppFields(**values))


@pytest.mark.parametrize(
    ("scope", "requested", "expected"),
    [
        pytest.param("admin profile", "admin profile", "profile", id="narrowed"),
        pytest.param("admin", None, "", id="default-scope-narrowed-silently"),
        pytest.param("profile", "profile", "profile", id="nothing-to-withhold"),
    ],
)
def test_unmarked_app_loses_admin(
    ctx: Context, scope: str, requested: str | None, expected: str
) -> None:
    app = _app(ctx)
    assert admin_scope.withhold(ctx, app, ISSUER, scope, requested=requested) == expected


def test_asking_for_admin_alone_is_invalid_scope(ctx: Context) -> None:
    with pytest.raises(InvalidScopeError):
        admin_scope.withhold(ctx, _app(ctx), ISSUER, "admin", requested="admin")


def test_marked_app_keeps_it_and_other_resources_are_untouched(ctx: Context) -> None:
    marked = _app(ctx, admin_access=True)
    assert admin_scope.withhold(ctx, marked, ISSUER, "admin", requested="admin") == "admin"
    # `admin` of another resource is that resource's business.
    plain = _app(ctx)
    assert admin_scope.withhold(ctx, plain, OTHER, "admin", requested="admin") == "admin"


def test_a_self_registered_app_never_administers_whatever_its_flag(ctx: Context) -> None:
    marked = _app(ctx, admin_access=True)
    assert admin_scope.may_administer(marked)
    assert not admin_scope.may_administer(replace(marked, dynamically_registered=True))
    assert not admin_scope.may_administer(replace(marked, metadata_document=True))
    assert not admin_scope.may_administer(None)


def test_admin_access_cannot_be_set_on_a_self_registered_app(ctx: Context) -> None:
    app = replace(_app(ctx), dynamically_registered=True)
    ctx.store.update_app(app)
    with pytest.raises(ValidationFailed) as refused:
        clients.update_app(ctx, SYSTEM, app.id, clients.AppFields(admin_access=True))
    assert refused.value.validations == {"admin_access": "only for apps an operator created"}
    found = ctx.store.get_app(app.id)
    assert found is not None and found.admin_access is False
