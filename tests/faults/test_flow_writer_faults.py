"""The flow writer (web/flow_writer.py) when the database fails under it, at the driver: the
batch it was writing is dropped and counted, nothing of it is committed, requests are not
affected, and the next batch is written."""

from __future__ import annotations

import pytest
from sqlalchemy import text
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

        def refusals() -> None:
            """Two refused steps, pending: a flow of one step (a client that failed to
            authenticate: its step alone) and an authorization request's (a summary row),
            so that the batch writes both tables."""
            refused = client.post("/oauth2/tokens", data=data, auth=(confidential.id, "wrong"))
            assert refused.status_code == 401
            page = client.get("/oauth2/authorize?client_id=nobody&response_type=code")
            assert page.status_code == 400

        refusals()
        outage.fail_on(statement)
        writer.flush()
        assert outage.fired == [statement]
        assert (writer.dropped, writer.written) == (2, 0)
        assert services.store.list_flows(FlowQuery())[1] == 0  # nothing of the batch stayed
        with services.store.engine.connect() as conn:
            for table in ("flows", "flow_steps"):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        # The requests never waited for it; the next batch is written.
        refusals()
        writer.flush()
        assert writer.written == 2
        found, total = services.store.list_flows(FlowQuery())
        assert total == 2
        assert {f.last_reason for f in found} == {"client_secret_wrong", "client_unknown"}


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
