"""An upstream sign-in in the flow timeline: on the way of an authorization request it is a
step of that request's flow, as the password form's sign-in is (the callback learns which
authorization from its transaction); its refusal says why; a sign-in that returns to no
authorization records nothing, and no upstream code, state or token is stored."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.testclient import TestClient

from authgate.core.flows import FlowQuery
from authgate.services import Services
from tests.conftest import make_client
from tests.flows import authorize_url, generate_pkce
from tests.upstream import provider
from tests.upstream.conftest import add_provider, callback_url, finish, sign_in, start
from tests.web.test_flows import assert_no_secret, flush, kinds, only_flow

PERSON = {"email": "alice@example.com", "email_verified": True, "name": "Alice"}


def test_a_sign_in_on_the_way_of_an_authorization_is_a_step_of_its_flow(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("alice-sub", PERSON)
    add_provider(services, "corp", op.issuer, jit_create=True)
    app = make_client(services)
    wanted = authorize_url(app.id, challenge=generate_pkce().challenge, scope="openid")
    assert client.get(wanted, follow_redirects=False).status_code in (302, 303)
    url = start(client, "corp", wanted)
    back = op.drive(url, "alice-sub", callback_url("corp"))
    done = finish(client, back)
    assert done.status_code == 303 and done.headers["location"] == wanted

    steps = only_flow(client, services, app.id)
    assert kinds(steps) == [("authorize", "ok", None), ("sign_in", "ok", None)]
    signed = steps[-1]
    assert signed.detail == {"provider": "corp", "idp": op.issuer}
    [user] = [u for u in services.store.list_users() if u.email == "alice@example.com"]
    assert signed.user_id == user.id
    query = parse_qs(urlsplit(back).query)
    assert_no_secret(services, query["code"][0], query["state"][0])


def test_a_refused_upstream_sign_in_says_why_in_the_flow(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("mallory", {"email": "mallory@elsewhere.example", "email_verified": True})
    add_provider(services, "corp", op.issuer, jit_create=True, allowed_domains=("example.com",))
    app = make_client(services)
    wanted = authorize_url(app.id, challenge=generate_pkce().challenge)
    client.get(wanted, follow_redirects=False)
    resp = sign_in(client, op, "corp", "mallory", return_to=wanted)
    assert resp.status_code == 403

    steps = only_flow(client, services, app.id)
    assert kinds(steps) == [("authorize", "ok", None), ("sign_in", "refused", "sign_in_failed")]
    assert steps[-1].detail == {"provider": "corp", "why": "domain_not_allowed"}
    # The reference on the page the person saw finds this step.
    assert steps[-1].reference is not None and steps[-1].reference in resp.text


def test_a_sign_in_that_returns_to_no_authorization_records_nothing(
    client: TestClient, services: Services, op: provider.OpenIdProvider
) -> None:
    op.set_account("alice-sub", PERSON)
    add_provider(services, "corp", op.issuer, jit_create=True)
    url = start(client, "corp")
    back = op.drive(url, "alice-sub", callback_url("corp"))
    assert finish(client, back).status_code == 303
    # The same callback again is refused, and its transaction is gone: nothing to tie it to.
    assert finish(client, back).status_code == 400
    flush(client)
    assert services.store.list_flows(FlowQuery())[1] == 0
