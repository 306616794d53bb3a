"""Prometheus metrics at ``/metrics`` (text exposition format).

Each app holds its own ``CollectorRegistry`` on ``app.state.metrics`` (two apps in one process,
as in the tests, never share counts). Labels are route templates and closed vocabularies
(status codes, grant types, OAuth error codes), never raw paths or client-chosen values. The
endpoint is not authenticated: operators keep it off the public internet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from authgate.core import flow_log
from authgate.core.context import Context
from authgate.core.errors import OAuthError
from authgate.core.flows import FlowStep
from authgate.core.grants import refresh_reuse
from authgate.core.ports import StoreUnavailableError
from authgate.core.token_endpoint import GRANTS
from authgate.crypto import passwords
from authgate.web.flow_writer import FlowWriter

UNMATCHED = "unmatched"
#: How many clients' metric labels a node remembers before it reads them again.
_MAX_CLIENT_LABELS = 4096
#: The method label: these, else "other" (a client may send any token as a method).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The operator-only ``debug`` texts of the token endpoint's replay defences, each of which
#: has recorded its audit event (``authorization_code.replayed``, ``refresh_token.reused``)
#: before raising. tests/web/test_metrics.py checks both counts against the audit log.
_CODE_REPLAYED = frozenset(
    {"authorization code replayed", "authorization code redeemed concurrently"}
)


class Metrics:
    """This app's collectors."""

    def __init__(
        self,
        pool_in_use: Callable[[], float] | None = None,
        fetch_refusals: Callable[[], Mapping[str, int]] | None = None,
        turns_waited: Callable[[], int] | None = None,
        refusals_delayed: Callable[[], int] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._issued: dict[str, Any] = {}
        registry = self.registry
        self.requests = Counter(
            "authgate_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "authgate_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            registry=registry,
        )
        self.tokens_issued = Counter(
            "authgate_tokens_issued",
            "Successful token responses by grant type.",
            ["grant_type"],
            registry=registry,
        )
        self.oauth_errors = Counter(
            "authgate_oauth_errors",
            "OAuth error responses (RFC 6749 JSON) by error code and endpoint (route template).",
            ["endpoint", "error"],
            registry=registry,
        )
        self.refresh_token_reuse = Counter(
            "authgate_refresh_token_reuse",
            "Used refresh tokens presented again as only a thief could (the family was revoked).",
            registry=registry,
        )
        self.refresh_reuse_refusals = Counter(
            "authgate_refresh_token_reuse_refusals",
            "Used refresh tokens presented again and refused, by reason (window_passed, "
            "clock_went_back, other_client, other_secret: the family was revoked; "
            "chain_unknown: it was not).",
            ["reason"],
            registry=registry,
        )
        self.refresh_continued = Counter(
            "authgate_refresh_token_continued",
            "Used refresh tokens presented again within the window by the same client, answered "
            "with the family's current refresh token (retries, sibling processes).",
            registry=registry,
        )
        self.code_replay = Counter(
            "authgate_authorization_code_replays",
            "Authorization codes presented again after redemption (the grant was revoked).",
            registry=registry,
        )
        self.cleanup_deleted = Counter(
            "authgate_cleanup_deleted_rows",
            "Rows the background cleanup deleted, by kind (sessions, codes, access_tokens, "
            "refresh_tokens, grants, clients).",
            ["kind"],
            registry=registry,
        )
        self.flow_refusals = Counter(
            "authgate_flow_refusals",
            "Refused flow steps by reason code (docs/flow-reasons.md) and client: the client_id "
            "of an app the operator registered, profile:<id> for a known client, else other.",
            ["reason", "client"],
            registry=registry,
        )
        # client_id → label; bounded, cleared when full (labels change rarely).
        self._client_labels: dict[str, str] = {}
        if pool_in_use is not None:
            gauge = Gauge(
                "authgate_db_pool_connections_in_use",
                "Database connections checked out of this node's pool.",
                registry=registry,
            )
            gauge.set_function(pool_in_use)
        registry.register(_Refusals(fetch_refusals, turns_waited, refusals_delayed))

    def observe_request(self, scope: Scope, status: int, seconds: float, error: str | None) -> None:
        route = route_template(scope)
        method = scope.get("method", "")
        key = (route, method if method in _METHODS else "other", status)
        children = self._children.get(key)
        if children is None:
            # Label lookups cost more than the increments; the key space is bounded (route
            # templates × methods × status codes), so the children are kept.
            children = (
                self.requests.labels(key[0], key[1], str(status)),
                self.latency.labels(route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if error is not None:
            self.oauth_errors.labels(route, error).inc()

    def token_issued(self, grant_type: str | None) -> None:
        if grant_type is not None and grant_type in GRANTS:
            child = self._issued.get(grant_type)
            if child is None:
                child = self._issued[grant_type] = self.tokens_issued.labels(grant_type)
            child.inc()

    def flow_steps_written(self, ctx: Context) -> Callable[[Sequence[FlowStep]], None]:
        """What the flow writer calls with each batch it wrote: counts the refusals."""

        def count(steps: Sequence[FlowStep]) -> None:
            for step in steps:
                if step.outcome == "refused" and step.reason is not None:
                    self.flow_refused(ctx, step.reason, step.client_id)

        return count

    def watch_flow_writer(self, writer: FlowWriter) -> None:
        """Export what the flow timeline's writer did and what it cost."""
        self.registry.register(_FlowWriterCollector(writer))

    def flow_refused(self, ctx: Context, reason: str, client_id: str | None) -> None:
        label = self._client_labels.get(client_id or "")
        if label is None:
            try:
                label = flow_log.client_label(ctx, client_id)
            except StoreUnavailableError:
                label = flow_log.OTHER_CLIENT
            if len(self._client_labels) >= _MAX_CLIENT_LABELS:
                self._client_labels.clear()
            self._client_labels[client_id or ""] = label
        self.flow_refusals.labels(reason, label).inc()

    def token_continued(self) -> None:
        self.refresh_continued.inc()

    def token_refused(self, exc: OAuthError) -> None:
        if exc.debug in _CODE_REPLAYED:
            self.code_replay.inc()
            return
        reason = refresh_reuse.refusal_reason(exc.debug)
        if reason is not None:
            self.refresh_reuse_refusals.labels(reason).inc()
            if reason in refresh_reuse.REVOKING:
                self.refresh_token_reuse.inc()


class _FlowWriterCollector(Collector):
    """The flow writer's counters (they live with it: ``web/flow_writer.py``)."""

    def __init__(self, writer: FlowWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        writer = self._writer
        yield CounterMetricFamily(
            "authgate_flow_steps_written",
            "Flow steps the background writer stored.",
            value=writer.written,
        )
        yield CounterMetricFamily(
            "authgate_flow_steps_dropped",
            "Flow steps dropped: too many pending, or the database refused the batch.",
            value=writer.dropped,
        )
        yield CounterMetricFamily(
            "authgate_flow_writer_cpu_seconds",
            "Processor time the flow writer's batches took in this process: the timeline's "
            "cost beside the recording in the requests themselves.",
            value=writer.cpu_seconds,
        )


class _Refusals(Collector):
    """Work refused at once because its bounded pool was full, or held back for its turn (the
    counts live with the pools: ``fetch/pool.py`` per app, ``crypto/passwords.py`` per process,
    ``web/fairness.py`` per app)."""

    def __init__(
        self,
        fetch_refusals: Callable[[], Mapping[str, int]] | None,
        turns_waited: Callable[[], int] | None,
        refusals_delayed: Callable[[], int] | None,
    ) -> None:
        self._fetch = fetch_refusals
        self._waited = turns_waited
        self._delayed = refusals_delayed

    def collect(self) -> Iterator[Metric]:
        fetches = CounterMetricFamily(
            "authgate_fetches_refused",
            "Metadata-document and jwks_uri fetches refused at once because the fetch pool "
            "was at a limit, by the limit (threads, host, source).",
            labels=["limit"],
        )
        for limit, count in (self._fetch() if self._fetch is not None else {}).items():
            fetches.add_metric([limit], count)
        yield fetches
        yield CounterMetricFamily(
            "authgate_password_checks_refused",
            "Sign-ins refused at once (429) because every password-hashing slot and queue "
            "place of the process was taken.",
            value=passwords.refusals,
        )
        if self._waited is not None:
            yield CounterMetricFamily(
                "authgate_requests_waited_turn",
                "Requests that waited for their turn because their source (an IPv4 address, "
                "an IPv6 /64) had AUTHGATE_HTTP_IN_FLIGHT_PER_SOURCE in progress while other "
                "sources were active.",
                value=self._waited(),
            )
        if self._delayed is not None:
            yield CounterMetricFamily(
                "authgate_refusals_delayed",
                "429 answers held for AUTHGATE_HTTP_REFUSAL_DELAY_SECONDS, in their source's "
                "turn, because other sources were active.",
                value=self._delayed(),
            )


def fetch_refusals(fetcher: object) -> Callable[[], Mapping[str, int]] | None:
    """The fetch pool's refusal counts, when the fetcher is a pool that counts them."""
    counts = getattr(fetcher, "refusals", None)
    if not isinstance(counts, dict):
        return None
    return lambda: dict(counts)


def pool_gauge(store: object) -> Callable[[], float] | None:
    """Connections in use, when the store has a SQLAlchemy pool that counts them."""
    pool = getattr(getattr(store, "engine", None), "pool", None)
    checkedout = getattr(pool, "checkedout", None)
    if not callable(checkedout):
        return None
    return lambda: float(checkedout())


def of(conn: HTTPConnection | Scope) -> Metrics | None:
    """The app's metrics, or None when ``AUTHGATE_METRICS_ENABLED`` is off."""
    app: Any = conn.app if isinstance(conn, HTTPConnection) else conn.get("app")
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


def route_template(scope: Scope) -> str:
    """The route's path template (``/oauth2/clients/{client_id}``), never the raw path (one
    series per client would be unbounded); ``unmatched`` when no route has this path."""
    route = scope.get("route")
    if route is None:
        # FastAPI's router does not record the matched route: find it as the router did.
        router = getattr(scope.get("app"), "router", None)
        partial = None
        for candidate in getattr(router, "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate
        route = route or partial
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


async def endpoint(request: Request) -> Response:
    metrics = of(request)
    if metrics is None:  # pragma: no cover - the route exists only when metrics are on
        return Response(status_code=404)
    return Response(
        generate_latest(metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
