"""Discovery requests are not flow steps (docs/decisions.md, "The flow timeline"): RFC 8414
metadata, the OpenID Provider document, the protected-resource metadata (RFC 9728) and the JWKS
carry no client_id, credential or cookie that would tie them to a client, so nothing records
them; they stay the cheap cached answers they were."""

from __future__ import annotations

from starlette.testclient import TestClient

from authgate.app import Services
from authgate.core.flows import FlowQuery
from tests.conftest import Client
from tests.web.test_flows import flush

DISCOVERY = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-protected-resource",
    "/.well-known/jwks.json",
)


def test_discovery_records_nothing(
    client: TestClient, services: Services, confidential: Client
) -> None:
    for path in DISCOVERY:
        resp = client.get(path, headers={"User-Agent": "an-mcp-client/1.0"})
        assert resp.status_code == 200, path
        assert resp.json()
    # Nothing a discovery request could be tied by: a client_id in the query changes nothing.
    assert client.get(f"{DISCOVERY[0]}?client_id={confidential.id}").status_code == 200
    flush(client)
    assert services.store.list_flows(FlowQuery())[1] == 0
    # The recorder is on: the next request that names the client is recorded.
    denied = client.post("/oauth2/introspect", data={"token": "x"}, auth=(confidential.id, "no"))
    assert denied.status_code == 401
    flush(client)
    assert services.store.list_flows(FlowQuery(client_id=confidential.id))[1] == 1
