"""Fuzzing the management API (/api/v2) from its own OpenAPI document with schemathesis.

Every operation gets schema-valid and schema-invalid requests, authenticated as an
administrator with a personal API token, with path parameters that are sometimes generated
and sometimes the ids of real objects. On every response: no 5xx; the status, content type,
headers and body conform to the document where schemathesis can check them; an error is an RFC
9457 problem document; and no secret of the fixture shows up. (tests/leaks.py checks, too, that
an issued secret appears in the one response that issued it and nowhere else.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import accounts, registration_settings
from authgate.core.context import SYSTEM
from authgate.core.flows import Flow, FlowQuery
from authgate.core.upstream import client_assertion, providers
from authgate.crypto import encryption
from tests.conftest import ISSUER, PASSWORD, Account, Client
from tests.fuzz.conftest import KEYED_PROVIDER, budget, refused_for_nul
from tests.http_types import Response

pytestmark = pytest.mark.leaks_presented_off

API = "/api/v2"
#: Every operation of the document; test_every_operation_is_fuzzed keeps the list complete.
OPERATIONS = (
    "GET /api/v2/oauth2-provider/apps",
    "POST /api/v2/oauth2-provider/apps",
    "GET /api/v2/oauth2-provider/apps/{app}",
    "PUT /api/v2/oauth2-provider/apps/{app}",
    "DELETE /api/v2/oauth2-provider/apps/{app}",
    "GET /api/v2/oauth2-provider/apps/{app}/secrets",
    "POST /api/v2/oauth2-provider/apps/{app}/secrets",
    "DELETE /api/v2/oauth2-provider/apps/{app}/secrets/{secret_id}",
    "GET /api/v2/oauth2-provider/apps/{app}/service-access",
    "PUT /api/v2/oauth2-provider/apps/{app}/service-access",
    "GET /api/v2/users/me/tokens",
    "POST /api/v2/users/me/tokens",
    "DELETE /api/v2/users/me/tokens/{token_id}",
    "GET /api/v2/users/me",
    "GET /api/v2/users/me/apps",
    "DELETE /api/v2/users/me/apps/{app}",
    "GET /api/v2/users",
    "POST /api/v2/users",
    "GET /api/v2/users/{user}",
    "PATCH /api/v2/users/{user}",
    "DELETE /api/v2/users/{user}",
    "GET /api/v2/resources",
    "POST /api/v2/resources",
    "GET /api/v2/resources/{resource}",
    "PUT /api/v2/resources/{resource}",
    "DELETE /api/v2/resources/{resource}",
    "GET /api/v2/keys",
    "POST /api/v2/keys/rotate",
    "GET /api/v2/audit",
    "GET /api/v2/oauth2-provider/settings",
    "PUT /api/v2/oauth2-provider/settings",
    "GET /api/v2/oauth2-provider/registration-tokens",
    "POST /api/v2/oauth2-provider/registration-tokens",
    "DELETE /api/v2/oauth2-provider/registration-tokens/{token_id}",
    "GET /api/v2/client-profiles",
    "GET /api/v2/client-profiles/{profile_id}",
    "PUT /api/v2/client-profiles/{profile_id}",
    "POST /api/v2/client-profiles/{profile_id}/pin",
    "DELETE /api/v2/client-profiles/{profile_id}",
    "POST /api/v2/client-check",
    "GET /api/v2/flows",
    "GET /api/v2/flows/failing",
    "GET /api/v2/flows/reasons",
    "GET /api/v2/flows/{flow}",
    "GET /api/v2/upstream-providers",
    "POST /api/v2/upstream-providers",
    "GET /api/v2/upstream-providers/{provider}",
    "PATCH /api/v2/upstream-providers/{provider}",
    "DELETE /api/v2/upstream-providers/{provider}",
    "GET /api/v2/upstream-providers/{provider}/certificate",
    "POST /api/v2/upstream-providers/{provider}/assertion-key",
)
#: The client secret of the upstream provider that exists during the run: never answered.
UPSTREAM_SECRET = "upstream-secret-of-the-fuzzed-provider"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: (method, path suffix) -> the response field that carries the secret the call issues.
ISSUING = {
    ("POST", "/secrets"): "client_secret_full",
    ("POST", "/users/me/tokens"): "token",
    ("POST", "/registration-tokens"): "token",
}


def load_schema(client: TestClient) -> Any:
    document = client.get(f"{API}/openapi.json")
    assert document.status_code == 200, document.text
    return schemathesis.openapi.from_dict(document.json())


def operations(schema: Any) -> dict[str, Any]:
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def real_flow(client: TestClient, services: Services, confidential: Client) -> Flow:
    """A flow that exists: a refused token request (a wrong secret) starts one of its own."""
    resp = client.post(
        "/oauth2/tokens",
        data={
            "grant_type": "client_credentials",
            "client_id": confidential.id,
            "client_secret": "not-the-secret",
        },
    )
    assert resp.status_code == 401, resp.text
    client.app.state.flow_writer.flush()  # type: ignore[attr-defined]
    [flow] = services.store.list_flows(FlowQuery(client_id=confidential.id, limit=1))[0]
    return flow


def real_path_values(
    client: TestClient,
    services: Services,
    admin: Account,
    alice: Account,
    confidential: Client,
    public: Client,
) -> dict[str, list[str]]:
    """Ids of objects that exist, for path parameters (the admin's own token is not among
    them: deleting it would end the run's authentication)."""
    ctx = services.ctx
    flow = real_flow(client, services, confidential)
    spare, _ = accounts.create_api_token(ctx, SYSTEM, admin.user, "spare", None)
    initial, _ = registration_settings.create_initial_access_token(ctx, SYSTEM, "fuzz")
    [secret] = services.store.list_secrets(confidential.id)
    resources = services.store.list_resources()
    upstream = providers.ProviderSpec(
        id="corp",
        display_name="Corp",
        issuer="https://idp.example.com",
        client_id="authgate",
        client_secret=UPSTREAM_SECRET,
    )
    providers.create_provider(ctx, SYSTEM, upstream)
    providers.create_provider(ctx, SYSTEM, KEYED_PROVIDER)
    return {
        "app": [confidential.id, public.id],
        "secret_id": [secret.id],
        "token_id": [spare.id, initial.id],
        "user": [alice.user.id, alice.user.username],
        "resource": [r.id for r in resources] + [r.identifier for r in resources],
        "profile_id": ["cursor", "claude-ai"],
        "flow": [flow.id],
        "provider": ["corp", "keyed"],
    }


def private_key_parts(services: Services) -> dict[str, str]:
    """The private key of the "keyed" provider, sealed and in clear (a line of its PEM):
    neither may ever be answered."""
    stored = services.store.get_upstream_provider("keyed")
    assert stored is not None and stored.assertion_key is not None
    key = encryption.derive_key(services.ctx.secret_key, client_assertion.PURPOSE)
    pem = encryption.decrypt(key, stored.assertion_key, b"keyed").decode()
    return {"sealed assertion key": stored.assertion_key, "assertion key": pem.splitlines()[5]}


def strategy(operation: Any, real: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Generated cases, positive and negative, a third of them aimed at real objects."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    plain = [operation.as_strategy(generation_mode=mode) for mode in modes]
    names = [p.name for p in operation.path_parameters]
    if not names or not all(name in real for name in names):
        return st.one_of(plain)
    aimed = st.fixed_dictionaries({name: st.sampled_from(real[name]) for name in names}).flatmap(
        lambda values: operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE, path_parameters=values
        )
    )
    return st.one_of([*plain, aimed])


def send(client: TestClient, case: Any, token: str) -> Response:
    kwargs = case.as_transport_kwargs(base_url=ISSUER, headers={"Authorization": f"Bearer {token}"})
    request: dict[str, Any] = {
        "headers": {k: str(v) for k, v in (kwargs.get("headers") or {}).items()},
        "params": kwargs.get("params"),
    }
    if kwargs.get("json") is not None:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    return client.request(kwargs["method"], kwargs["url"], **request)


def assert_problem(resp: Response) -> None:
    """RFC 9457: an error is application/problem+json with a title, the status and a detail."""
    assert resp.headers["content-type"].startswith("application/problem+json"), (
        resp.status_code,
        resp.headers,
        resp.text,
    )
    body = resp.json()
    assert body["status"] == resp.status_code, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str), body
    assert body.get("type", "about:blank") == "about:blank", body


def assert_no_fixture_secret(resp: Response, secrets: dict[str, str]) -> None:
    for kind, value in secrets.items():
        assert value not in resp.text, f"{kind} in response {resp.status_code}"


def issued_secret(case: Any, resp: Response) -> str | None:
    method = case.operation.method.upper()
    for (issuing_method, suffix), name in ISSUING.items():
        issuing = method == issuing_method and case.operation.path.endswith(suffix)
        if issuing and resp.status_code == 201:
            value: str = resp.json()[name]
            return value
    return None


def run_operation(
    client: TestClient,
    operation: Any,
    real: dict[str, list[str]],
    token: str,
    secrets: dict[str, str],
    settings_of: Callable[[Callable[..., None]], Callable[..., None]],
) -> None:
    issued: list[str] = []

    @settings_of
    @given(case=strategy(operation, real))
    def check(case: Any) -> None:
        resp = send(client, case, token)
        if refused_for_nul(resp):
            return
        case.validate_response(resp, checks=CHECKS)
        if resp.status_code >= 400:
            assert_problem(resp)
        assert_no_fixture_secret(resp, secrets)
        for earlier in issued:
            assert earlier not in resp.text, "a secret issued earlier was shown again"
        value = issued_secret(case, resp)
        if value is not None:
            issued.append(value)

    check()


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation(
    label: str,
    client: TestClient,
    services: Services,
    database_url: str,
    admin: Account,
    alice: Account,
    confidential: Client,
    public: Client,
) -> None:
    operation = operations(load_schema(client))[label]
    real = real_path_values(client, services, admin, alice, confidential, public)
    assert confidential.secret is not None
    secrets = {"client secret": confidential.secret, "API token": alice.api_token}
    secrets["password"] = PASSWORD
    secrets["upstream client secret"] = UPSTREAM_SECRET
    secrets |= private_key_parts(services)
    run_operation(client, operation, real, admin.api_token, secrets, budget(database_url))
    # The run authenticated throughout: the admin's token still works.
    me = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {admin.api_token}"})
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "admin"


def test_every_operation_is_fuzzed(client: TestClient) -> None:
    assert sorted(operations(load_schema(client))) == sorted(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        pytest.param("POST", "/users/me/tokens", b"\x07{not json", 400, id="body-not-json"),
        pytest.param("POST", "/oauth2-provider/apps", b"[1,", 400, id="body-truncated"),
        pytest.param("GET", "/no-such-collection", b"", 404, id="unknown-path"),
        pytest.param("PATCH", "/keys", b"", 405, id="wrong-method"),
    ],
)
def test_framework_errors_are_problem_documents(
    client: TestClient, admin: Account, method: str, path: str, content: bytes, status: int
) -> None:
    """Found by the fuzzer: a body FastAPI cannot parse was answered with its own
    ``{"detail": ...}`` JSON instead of a problem document."""
    resp = client.request(
        method,
        f"{API}{path}",
        content=content,
        headers={"Authorization": f"Bearer {admin.api_token}", "Content-Type": "application/json"},
    )
    assert resp.status_code == status, resp.text
    assert_problem(resp)
    if status == 405:
        assert resp.headers["allow"] == "GET"


def test_framework_errors_elsewhere_keep_their_shape(client: TestClient) -> None:
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("lifetime", [35184372088832, 10**20, 5 * 366 * 86400 + 1])
def test_initial_access_token_lifetime_out_of_range(
    client: TestClient, services: Services, admin: Account, lifetime: int
) -> None:
    """Found by the fuzzer: a lifetime past what a date can hold was a 500 (an overflow)."""
    resp = client.post(
        f"{API}/oauth2-provider/registration-tokens",
        json={"name": "ci", "lifetime_seconds": lifetime},
        headers={"Authorization": f"Bearer {admin.api_token}"},
    )
    assert resp.status_code == 400, resp.text
    assert_problem(resp)
    assert "lifetime_seconds" in resp.json()["validations"]
    assert registration_settings.list_initial_access_tokens(services.ctx) == []
