"""``authgate flows``: show, tail, failing and reasons, on the data directory's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from authgate.core import flow_reasons
from authgate.core.flows import FlowStep
from authgate.storage import SqlStore
from tests.cli.conftest import Cli


def _step(flow: str, n: int, client: str, reason: str | None = None) -> FlowStep:
    return FlowStep(
        id=f"{flow}-{n}",
        flow_id=flow,
        seq=n,
        at=datetime.now(UTC) - timedelta(minutes=10 - n),
        kind="token" if reason else "authorize",
        outcome="refused" if reason else "ok",
        reason=reason,
        client_id=client,
        user_id="u1",
        resource="https://api.example.com",
        request_id=f"ref{n:05d}-request",
        reference=f"ref{n:05d}",
        detail={"grant_type": "authorization_code"} if reason else {},
    )


def test_show_tail_failing_reasons(migrated: Cli, store: SqlStore) -> None:
    store.record_flow_steps(
        [
            _step("flow-a", 1, "app-a"),
            _step("flow-a", 2, "app-a", "pkce_verifier_mismatch"),
            _step("flow-b", 3, "app-b"),
        ]
    )
    shown = migrated.json("flows", "show", "flow-a")
    assert shown["flow"]["client_id"] == "app-a"
    assert [s["reason"] for s in shown["steps"]] == [None, "pkce_verifier_mismatch"]
    text = migrated.ok("flows", "show", "ref00002").stdout  # by the reference of a step
    assert "flow-a" in text and "pkce_verifier_mismatch" in text
    fix = flow_reasons.BY_CODE["pkce_verifier_mismatch"].fix
    assert fix is not None and fix in text.replace("\n  ", " ")
    migrated.fails("flows", "show", "nothing")

    tail = migrated.json("flows", "tail", "--client", "app-a")
    assert [f["id"] for f in tail] == ["flow-a"]
    both = migrated.json("flows", "tail")
    assert [f["id"] for f in both] == ["flow-a", "flow-b"]  # oldest first, like tail
    assert migrated.json("flows", "tail", "--refused") == tail
    assert "LAST OUTCOME" in migrated.ok("flows", "tail").stdout

    assert migrated.json("flows", "failing") == [{"client_id": "app-a", "refusals": 1}]
    assert migrated.ok("flows", "reasons", "--markdown").stdout == flow_reasons.markdown()
    codes = [r["code"] for r in migrated.json("flows", "reasons")]
    assert codes == [r.code for r in flow_reasons.REASONS]
