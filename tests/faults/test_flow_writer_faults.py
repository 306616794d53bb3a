"""The flow writer (web/flow_writer.py) when the database fails under it, at the driver: the
batch it was writing is dropped and counted, nothing of it is committed, requests are not
affected, and the next batch is written."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from authgate.app import Services, create_app
from authgate.config import Settings
from authgate.core.flows import FlowQuery
from tests.conftest import ISSUER, Client
from tests.faults.conftest import Outage
from tests.flows import RESOURCE


@pytest.fixture
def recording(settings: Settings) -> Settings:
    return settings.model_copy(update={"flows_enabled": True})


@pytest.mark.parametrize("statement", ["INSERT INTO flow_steps", "INSERT INTO flows", "COMMIT"])
def test_a_failed_batch_is_dropped_and_the_next_is_written(
    recording: Settings,
    services: Services,
    confidential: Client,
    outage: Outage,
    statement: str,
) -> None:
    data = {"grant_type": "client_credentials", "resource": RESOURCE}
    with TestClient(create_app(recording, services=services), base_url=ISSUER) as client:
        writer = client.app.state.flow_writer  # type: ignore[attr-defined]
        refused = client.post("/oauth2/tokens", data=data, auth=(confidential.id, "wrong"))
        assert refused.status_code == 401  # one refused step, pending
        outage.fail_on(statement)
        writer.flush()
        assert outage.fired == [statement]
        assert (writer.dropped, writer.written) == (1, 0)
        assert services.store.list_flows(FlowQuery())[1] == 0  # nothing of the batch stayed
        # The requests never waited for it; the next batch is written.
        again = client.post("/oauth2/tokens", data=data, auth=(confidential.id, "wrong"))
        assert again.status_code == 401
        writer.flush()
        assert writer.written == 1
        found, total = services.store.list_flows(FlowQuery(client_id=confidential.id))
        assert total == 1 and found[0].last_reason == "client_secret_wrong"


def test_requests_answer_while_the_writer_cannot_write(
    recording: Settings, services: Services, outage: Outage
) -> None:
    with TestClient(create_app(recording, services=services), base_url=ISSUER) as client:
        writer = client.app.state.flow_writer  # type: ignore[attr-defined]
        page = client.get("/oauth2/authorize?client_id=nobody&response_type=code")
        assert page.status_code == 400
        outage.down = True
        writer.flush()  # logged and dropped, never raised
        assert writer.dropped == 1
        outage.heal()
        resp = client.get("/.well-known/oauth-authorization-server")
        assert resp.status_code == 200
