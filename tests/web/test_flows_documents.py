"""The flow steps of metadata-document clients: a document that cannot be fetched and one that
is not valid each refuse the authorization request with their own reason code, on the page a
person sees, whose reference finds the flow."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core import flow_log
from authgate.core.flows import FlowQuery
from tests.fetch.server import DocumentServer, Route
from tests.flows import RESOURCE, authorize, exchange_code, generate_pkce
from tests.spec.test_client_metadata_documents import (  # noqa: F401 (fixtures)
    PATH,
    authorize_page,
    docs,
    publish,
    settings,
)


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        pytest.param(Route(b"", 404), "client_document_fetch_failed", id="not-found"),
        pytest.param(Route(b"{not json"), "client_document_invalid", id="not-json"),
    ],
)
def test_document_refusals(
    signed_in: TestClient,
    services: Services,
    docs: DocumentServer,  # noqa: F811
    route: Route,
    reason: str,
) -> None:
    url = docs.url(PATH)
    docs.routes[PATH] = route
    page = authorize_page(signed_in, url)
    assert page.status_code == 400 and "location" not in page.headers
    match = re.search(r'id="error-reference">([^<]+)<', page.text)
    assert match is not None
    signed_in.app.state.flow_writer.flush()  # type: ignore[attr-defined]
    timeline = flow_log.timeline(services.ctx, match.group(1))
    assert [(s.kind, s.outcome, s.reason) for s in timeline.steps] == [
        ("document_fetch", "refused", reason),
        ("authorize", "refused", reason),
    ]
    assert timeline.steps[0].detail == {"url": url}
    assert timeline.flow.client_id == url


def test_a_fetched_document_is_a_step_of_the_flow(
    signed_in: TestClient,
    services: Services,
    docs: DocumentServer,  # noqa: F811
) -> None:
    url = publish(docs)
    pkce = generate_pkce()
    code = authorize(signed_in, url, challenge=pkce.challenge, resource=RESOURCE)
    resp = exchange_code(signed_in, code, client_id=url, client_secret=None, verifier=pkce.verifier)
    assert resp.status_code == 200
    signed_in.app.state.flow_writer.flush()  # type: ignore[attr-defined]
    found, total = services.store.list_flows(FlowQuery(client_id=url))
    assert total == 1
    steps = services.store.list_flow_steps(found[0].id)
    assert [s.kind for s in steps] == [
        "document_fetch",
        "authorize",
        "consent",
        "code_issued",
        "token",
    ]
    assert found[0].refusals == 0
