"""Refresh continuity across two real nodes on one PostgreSQL database (issue 17 item 3).

Two `authgate serve` processes with the default reuse window (120 s): the same refresh token
presented at once to both nodes, as processes of one CLI sharing a credential store do, ends
with every presenter holding the same, working refresh token and one live chain in the
database; a presenter still holding an older token of the chain gets the current one from
either node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.flows import generate_pkce
from tests.procs import (
    AUTHGATE,
    PG_URL,
    REDIRECT_URI,
    Deployment,
    Node,
    Processes,
    free_port,
    fresh_pg_database,
    provision,
    race,
    sign_in_and_allow,
    token,
    wait_ready,
)

pytestmark = pytest.mark.slow


@dataclass
class Pair:
    deployment: Deployment
    database_url: str
    a: Node
    b: Node


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("multi-node-refresh")
    processes = Processes()
    with fresh_pg_database(PG_URL, "authgate_mnr") as database_url:
        try:
            deployment = provision(database_url, workdir, processes)
            a = deployment.start("a")
            port_b = free_port()
            args = [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(port_b)]
            b = Node(
                f"http://127.0.0.1:{port_b}",
                processes.start(args, deployment.env, workdir, "b"),
            )
            wait_ready(b, "b")
            yield Pair(deployment, database_url, a, b)
        finally:
            processes.stop_all()


def _first_tokens(pair: Pair) -> dict[str, str]:
    pkce = generate_pkce()
    web = pair.deployment.web
    code = sign_in_and_allow(pair.a, pair.deployment.issuer, web[0], pkce.challenge)
    resp = token(
        pair.b,
        web,
        grant_type="authorization_code",
        code=code,
        code_verifier=pkce.verifier,
        redirect_uri=REDIRECT_URI,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, str] = resp.json()
    return body


def _refresh(node: Node, pair: Pair, value: str) -> httpx.Response:
    return token(node, pair.deployment.web, grant_type="refresh_token", refresh_token=value)


def _family(pair: Pair, value: str) -> dict[str, int]:
    """The family of refresh token ``value`` in the database: its refresh tokens, the live ones
    (neither used nor revoked), its live access tokens and the continuations audited."""
    prefix = value.split("_")[1]
    engine = sa.create_engine(pair.database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            grant_id = conn.execute(
                sa.text("SELECT grant_id FROM refresh_tokens WHERE prefix = :p"), {"p": prefix}
            ).scalar_one()
            counts = {
                "refresh": "SELECT count(*) FROM refresh_tokens WHERE grant_id = :g",
                "live_refresh": "SELECT count(*) FROM refresh_tokens WHERE grant_id = :g "
                "AND consumed_at IS NULL AND revoked_at IS NULL",
                "live_access": "SELECT count(*) FROM access_tokens WHERE grant_id = :g "
                "AND revoked_at IS NULL",
                "continued": "SELECT count(*) FROM audit_log WHERE target_id = :g "
                "AND action = 'refresh_token.continued'",
                "revoked": "SELECT count(*) FROM audit_log WHERE target_id = :g "
                "AND action = 'refresh_token.reused'",
            }
            return {
                name: int(conn.execute(sa.text(query), {"g": grant_id}).scalar_one())
                for name, query in counts.items()
            }
    finally:
        engine.dispose()


def _continued(node: Node) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "authgate_refresh_token_continued_total":
                return sample.value
    return 0.0


def test_one_token_presented_to_both_nodes_at_once_continues_one_chain(pair: Pair) -> None:
    first = _first_tokens(pair)
    before = _continued(pair.a) + _continued(pair.b)
    nodes = [pair.a, pair.b] * 4
    results = race([partial(_refresh, node, pair, first["refresh_token"]) for node in nodes])
    assert [r.status_code for r in results] == [200] * 8, [r.text for r in results]
    bodies = [r.json() for r in results]
    current = {body["refresh_token"] for body in bodies}
    assert len(current) == 1, "the family forked"
    (head,) = current
    assert head != first["refresh_token"]
    assert len({body["access_token"] for body in bodies}) == 8
    assert _family(pair, head) == {
        "refresh": 2,
        "live_refresh": 1,
        "live_access": 9,
        "continued": 7,
        "revoked": 0,
    }
    assert _continued(pair.a) + _continued(pair.b) - before == 7
    # Every presenter's token works, on either node.
    for node, body in ((pair.a, bodies[0]), (pair.b, bodies[1])):
        me = httpx.get(
            f"{node.url}/api/v2/users/me",
            headers={"Authorization": f"Bearer {body['access_token']}"},
            timeout=10,
        )
        assert me.status_code == 200, me.text
    # The chain moves on from the one head; a process still holding the first token gets the
    # new head from the other node, and nothing forks.
    nxt = _refresh(pair.a, pair, head)
    assert nxt.status_code == 200, nxt.text
    newest = nxt.json()["refresh_token"]
    late = _refresh(pair.b, pair, first["refresh_token"])
    assert late.status_code == 200, late.text
    assert late.json()["refresh_token"] == newest
    state = _family(pair, newest)
    assert (state["refresh"], state["live_refresh"], state["revoked"]) == (3, 1, 0)


def test_the_head_raced_by_its_holders_and_an_older_token_stays_one_chain(pair: Pair) -> None:
    first = _first_tokens(pair)
    second = _refresh(pair.a, pair, first["refresh_token"])
    assert second.status_code == 200, second.text
    head = second.json()["refresh_token"]
    # Holders of the head (rotating it) and of the first token (continuing) at once.
    calls: list[Callable[[], httpx.Response]] = [
        partial(_refresh, node, pair, value)
        for node in (pair.a, pair.b)
        for value in (head, first["refresh_token"], head)
    ]
    results = race(calls)
    assert [r.status_code for r in results] == [200] * 6, [r.text for r in results]
    tokens = {r.json()["refresh_token"] for r in results}
    state = _family(pair, head)
    assert state["live_refresh"] == 1, state
    assert state["revoked"] == 0
    # Whoever raced the first token before the head was rotated got the head itself; everyone
    # else got its one successor: at most those two values, and the successor is the live one.
    assert len(tokens - {head}) == 1, tokens
    assert state["refresh"] == 3  # the first, the head and its one successor
