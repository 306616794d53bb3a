"""SQL queries of the flow timeline: steps appended in batches, flows summarised, searched and
purged by age and cap (``core/flows.py``, ``core/flow_log.py``).

A flow of one step (``FlowStep.alone``) has no ``flows`` row: the searches read its summary off
the step (``_alone_flows``), beside the ``flows`` rows, in one ordered page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Integer,
    Row,
    Select,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from authgate.core.flows import Flow, FlowQuery, FlowStep, StepPosition
from authgate.storage.sql.base import Intent, SqlBase
from authgate.storage.sql.tables import flow_steps, flows

_INSERT_STEP = insert(flow_steps)


@dataclass(slots=True)
class _Summary:
    """What one batch adds to a flow's row."""

    first: FlowStep
    last: FlowStep
    steps: int = 0
    refusals: int = 0
    client_id: str | None = None
    user_id: str | None = None
    resource: str | None = None

    def add(self, step: FlowStep) -> None:
        if (step.at, step.seq) >= (self.last.at, self.last.seq):
            self.last = step
        if (step.at, step.seq) < (self.first.at, self.first.seq):
            self.first = step
        self.steps += 1
        self.refusals += step.outcome == "refused"
        self.client_id = self.client_id or step.client_id
        self.user_id = self.user_id or step.user_id
        self.resource = self.resource or step.resource

    def row(self, flow_id: str) -> dict[str, Any]:
        return {
            "id": flow_id,
            "started_at": self.first.at,
            "last_at": self.last.at,
            "client_id": self.client_id,
            "user_id": self.user_id,
            "resource": self.resource,
            "steps": self.steps,
            "refusals": self.refusals,
            "last_outcome": self.last.outcome,
            "last_reason": self.last.reason,
        }


def _summaries(steps: Sequence[FlowStep]) -> dict[str, _Summary]:
    summaries: dict[str, _Summary] = {}
    for step in steps:
        if step.alone:
            continue
        summary = summaries.setdefault(step.flow_id, _Summary(step, step))
        summary.add(step)
    return summaries


def _upsert_flow(dialect: str) -> Insert:
    """Insert a flow's summary, or add a batch's to it: the earliest start, the latest step,
    the first identifiers known, the counts added, the last step's outcome."""
    pg = dialect == "postgresql"
    stmt = (postgresql.insert if pg else sqlite.insert)(flows)
    new = stmt.excluded
    earlier, later = (func.least, func.greatest) if pg else (func.min, func.max)
    return stmt.on_conflict_do_update(
        index_elements=[flows.c.id],
        set_={
            "started_at": earlier(flows.c.started_at, new.started_at),
            "last_at": later(flows.c.last_at, new.last_at),
            "client_id": func.coalesce(flows.c.client_id, new.client_id),
            "user_id": func.coalesce(flows.c.user_id, new.user_id),
            "resource": func.coalesce(flows.c.resource, new.resource),
            "steps": flows.c.steps + new.steps,
            "refusals": flows.c.refusals + new.refusals,
            "last_outcome": new.last_outcome,
            "last_reason": new.last_reason,
        },
    )


# Written by the background writer in batches: on the DBAPI connection, compiled once
# (prepared.py), so a step costs the database's work and little Python.
_UPSERT_FLOW = {"postgresql": _upsert_flow("postgresql"), "sqlite": _upsert_flow("sqlite")}


#: The steps that are flows of their own (the partial indexes' condition, tables.ALONE), and
#: the others (that of the index of steps by flow, tables.NOT_ALONE).
_ALONE = flow_steps.c.id == flow_steps.c.flow_id
_NOT_ALONE = flow_steps.c.id != flow_steps.c.flow_id


def _alone_flows() -> Select[Any]:
    """The summary of each flow of one step, read off that step, in the columns of ``flows``."""
    step = flow_steps.c
    return select(
        step.flow_id.label("id"),
        step.at.label("started_at"),
        step.at.label("last_at"),
        step.client_id,
        step.user_id,
        step.resource,
        literal(1, Integer).label("steps"),
        case((step.outcome == "refused", 1), else_=0).label("refusals"),
        step.outcome.label("last_outcome"),
        step.reason.label("last_reason"),
    ).where(_ALONE)


def _filters(query: FlowQuery) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if query.client_id is not None:
        filters.append(flows.c.client_id == query.client_id)
    if query.user_id is not None:
        filters.append(flows.c.user_id == query.user_id)
    if query.resource is not None:
        filters.append(flows.c.resource == query.resource)
    if query.reason is not None:
        having = select(flow_steps.c.flow_id).where(flow_steps.c.reason == query.reason)
        filters.append(flows.c.id.in_(having))
    if query.reference is not None:
        # A reference is read off an error page: a refusal, which has a reason (the condition
        # lets the partial index on references answer).
        named = select(flow_steps.c.flow_id).where(
            flow_steps.c.reference == query.reference, flow_steps.c.reason.is_not(None)
        )
        filters.append(flows.c.id.in_(named))
    if query.refused is not None:
        filters.append(flows.c.refusals > 0 if query.refused else flows.c.refusals == 0)
    if query.since is not None:
        filters.append(flows.c.last_at >= query.since)
    if query.until is not None:
        filters.append(flows.c.last_at < query.until)
    return filters


def _alone_filters(query: FlowQuery) -> list[ColumnElement[bool]]:
    """``_filters`` for the flows of one step, on that step's columns."""
    step = flow_steps.c
    filters: list[ColumnElement[bool]] = []
    for value, column in (
        (query.client_id, step.client_id),
        (query.user_id, step.user_id),
        (query.resource, step.resource),
        (query.reason, step.reason),
    ):
        if value is not None:
            filters.append(column == value)
    if query.reference is not None:
        filters.append(step.reference == query.reference)
        filters.append(step.reason.is_not(None))
    if query.refused is not None:
        refused = step.outcome == "refused"
        filters.append(refused if query.refused else ~refused)
    if query.since is not None:
        filters.append(step.at >= query.since)
    if query.until is not None:
        filters.append(step.at < query.until)
    return filters


def _to_flow(row: Row[Any]) -> Flow:
    return Flow(**row._mapping)


def _to_step(row: Row[Any]) -> FlowStep:
    return FlowStep(**row._mapping)


class FlowQueries(SqlBase):
    def record_flow_steps(self, steps: Sequence[FlowStep]) -> None:
        if not steps:
            return
        rows = [summary.row(flow_id) for flow_id, summary in _summaries(steps).items()]
        upsert = _UPSERT_FLOW["sqlite" if self._sqlite else "postgresql"]
        converted: dict[datetime, Any] = {}  # a flow's times are its steps'
        with self._raw_transaction(Intent.WRITE) as db:
            db.execute_each(_INSERT_STEP, steps, attributes=True, converted=converted)
            db.execute_each(upsert, rows, converted=converted)

    def list_flows(self, query: FlowQuery) -> tuple[Sequence[Flow], int]:
        filters, alone = _filters(query), _alone_filters(query)
        page = (
            union_all(select(flows).where(*filters), _alone_flows().where(*alone))
            .order_by(literal_column("last_at").desc(), literal_column("id").desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        counts = (
            select(func.count()).select_from(flows).where(*filters),
            select(func.count()).select_from(flow_steps).where(_ALONE, *alone),
        )
        with self._transaction() as conn:
            found = [_to_flow(row) for row in conn.execute(page)]
            total = sum(int(conn.execute(count).scalar_one()) for count in counts)
        return found, total

    def get_flow(self, flow_id: str) -> Flow | None:
        with self._transaction() as conn:
            row = conn.execute(select(flows).where(flows.c.id == flow_id)).first()
            if row is None:
                row = conn.execute(_alone_flows().where(flow_steps.c.id == flow_id)).first()
        return _to_flow(row) if row else None

    def list_flow_steps(self, flow_id: str) -> Sequence[FlowStep]:
        # The steps of a longer flow by the index of steps by flow, a flow of one step by its
        # step's id: each condition lets its index answer.
        query = union_all(
            select(flow_steps).where(flow_steps.c.flow_id == flow_id, _NOT_ALONE),
            select(flow_steps).where(flow_steps.c.id == flow_id, _ALONE),
        ).order_by(literal_column("at"), literal_column("seq"), literal_column("id"))
        with self._transaction() as conn:
            return [_to_step(row) for row in conn.execute(query)]

    def failing_clients(self, since: datetime, limit: int) -> Sequence[tuple[str, int]]:
        refusals = func.count().label("refusals")
        query = (
            select(flow_steps.c.client_id, refusals)
            .where(
                flow_steps.c.outcome == "refused",
                flow_steps.c.at >= since,
                flow_steps.c.client_id.is_not(None),
            )
            .group_by(flow_steps.c.client_id)
            .order_by(refusals.desc(), flow_steps.c.client_id)
            .limit(limit)
        )
        with self._transaction() as conn:
            return [(str(row.client_id), int(row.refusals)) for row in conn.execute(query)]

    def flow_step_cutoff(self, cap: int) -> StepPosition | None:
        query = (
            select(flow_steps.c.at, flow_steps.c.seq)
            .order_by(flow_steps.c.at.desc(), flow_steps.c.seq.desc())
            .offset(cap)
            .limit(1)
        )
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.at, int(row.seq))

    def purge_flow_steps(self, before: datetime, up_to: StepPosition | None, limit: int) -> int:
        which: ColumnElement[bool] = flow_steps.c.at < before
        if up_to is not None:
            which = or_(which, tuple_(flow_steps.c.at, flow_steps.c.seq) <= tuple_(*up_to))
        return self._purge_batch(flow_steps, which, limit)

    def purge_flows(self, before: datetime, limit: int) -> int:
        # A flow with a row has no step alone (_summaries): its steps are in the flow index.
        steps = select(flow_steps.c.id).where(flow_steps.c.flow_id == flows.c.id, _NOT_ALONE)
        stepless = ~steps.exists()
        return self._purge_batch(flows, or_(flows.c.last_at < before, stepless), limit)

    def _purge_batch(self, table: Any, which: ColumnElement[bool], limit: int) -> int:
        key = list(table.primary_key.columns)
        batch = select(*key).where(which).limit(limit).with_for_update(skip_locked=True)
        with self._transaction(write=True) as conn:
            return int(conn.execute(delete(table).where(tuple_(*key).in_(batch))).rowcount)
