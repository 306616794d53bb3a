"""JSON shapes of the flow timeline (``/api/v2/flows``), shared with ``authgate flows``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from authgate.core import flow_reasons
from authgate.core.flow_log import Timeline
from authgate.core.flows import Flow, FlowStep


class FlowOut(BaseModel):
    id: str
    started_at: datetime
    last_at: datetime
    client_id: str | None
    user_id: str | None
    resource: str | None
    steps: int
    refusals: int
    last_outcome: str
    last_reason: str | None

    @classmethod
    def of(cls, flow: Flow) -> FlowOut:
        return cls(
            id=flow.id,
            started_at=flow.started_at,
            last_at=flow.last_at,
            client_id=flow.client_id,
            user_id=flow.user_id,
            resource=flow.resource,
            steps=flow.steps,
            refusals=flow.refusals,
            last_outcome=flow.last_outcome,
            last_reason=flow.last_reason,
        )


class FlowStepOut(BaseModel):
    id: str
    at: datetime
    kind: str
    outcome: str
    reason: str | None
    #: The operator's explanation of ``reason`` and what the client's developer should change.
    explanation: str | None
    fix: str | None
    client_id: str | None
    user_id: str | None
    resource: str | None
    request_id: str | None
    reference: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, step: FlowStep) -> FlowStepOut:
        reason = flow_reasons.BY_CODE.get(step.reason) if step.reason else None
        return cls(
            id=step.id,
            at=step.at,
            kind=step.kind,
            outcome=step.outcome,
            reason=step.reason,
            explanation=reason.explanation if reason else None,
            fix=reason.fix if reason else None,
            client_id=step.client_id,
            user_id=step.user_id,
            resource=step.resource,
            request_id=step.request_id,
            reference=step.reference,
            detail=dict(step.detail),
        )


class FlowPage(BaseModel):
    flows: list[FlowOut]
    count: int


class FlowTimelineOut(BaseModel):
    flow: FlowOut
    steps: list[FlowStepOut]

    @classmethod
    def of(cls, timeline: Timeline) -> FlowTimelineOut:
        return cls(
            flow=FlowOut.of(timeline.flow), steps=[FlowStepOut.of(s) for s in timeline.steps]
        )


class FailingClientOut(BaseModel):
    client_id: str
    refusals: int


class ReasonOut(BaseModel):
    code: str
    explanation: str
    fix: str | None
