"""Writes the flow steps requests record, in batches, off the request path (core/flows.py).

A request only appends its steps to a list under a lock; a thread of this process takes what
has gathered every ``interval`` seconds and writes it in one transaction (on SQLite one group
commit, on PostgreSQL one round trip per statement). The interval is short (0.1 s): preparing
a batch's rows is Python work that holds the interpreter lock, and batches of 0.2 s (about 400
steps under load) held it long enough to add 4–5 ms to the 99th percentile of token requests;
0.1 s added about 3 ms. Shorter still saved little more and cost more commits (0.05 s: the
writer's share of the server's CPU 2.7 % instead of 2.5 % for cc_jwt). The three runs are in
the commit that chose 0.1 s.

The thread starts with the first steps and ends after a while without any, so an idle app
holds no thread. What is pending is bounded:
beyond ``max_pending`` steps new ones are dropped and counted (a database that cannot keep up
must not take the process's memory with it). Steps are diagnostics, not state: a process
killed before its next write loses at most ``interval`` seconds of them.

A flood of refusals that belong to no earlier flow (a client retrying in a loop, an attacker)
would write a flow per request: beyond ``burst`` such refusals per second for one client and
reason, they are counted in the metrics but not written, and the next one written says how
many were left out (``detail.suppressed``). A flood that names a new client in every request
(a fresh metadata-document URL each time) passes that bound, so the refusals of one reason
are bounded over all clients too: beyond ``burst_overall`` a second, the next one written
says how many of that reason were left out for any client (``detail.suppressed_overall``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from authgate.core.flows import FlowStep
from authgate.core.ports import Store, StoreUnavailableError

log = logging.getLogger("authgate.flows")

K = TypeVar("K")

#: Idle rounds after which the writing thread ends (a new step starts another).
_IDLE_ROUNDS = 25


class FlowWriter:
    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.1,
        max_pending: int = 50_000,
        on_written: Callable[[Sequence[FlowStep]], None] | None = None,
        burst: int = 10,
        burst_overall: int = 50,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        # Called in the writing thread with each batch written (the refusal metrics: reading
        # a client's label may read the database, which a request must not wait for).
        self._on_written = on_written
        self._interval = interval
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[FlowStep] = []
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._burst = burst
        self._burst_overall = burst_overall
        self._monotonic = monotonic
        # (client, reason), and reason over every client → their _Window.
        self._floods: dict[tuple[str | None, str | None], _Window] = {}
        self._reason_floods: dict[str | None, _Window] = {}
        # Left out of the store, still counted by ``on_written``.
        self._uncounted: list[FlowStep] = []
        #: Steps dropped because too many were pending or the database refused them.
        self.dropped = 0
        self.written = 0
        #: Processor time the writes took (``authgate_flow_writer_cpu_seconds_total``): what
        #: the timeline costs beside the steps' recording in the requests themselves.
        self.cpu_seconds = 0.0

    def submit(self, steps: Sequence[FlowStep], *, untied_refusal: bool = False) -> None:
        """Queue one request's steps; ``untied_refusal``: they end in a refusal and start a
        flow of their own (subject to the flood bound, keyed on the refusal: the last step)."""
        with self._lock:
            if untied_refusal and steps:
                steps = self._bounded(steps)
                if not steps:
                    return
            room = self._max_pending - len(self._pending)
            if room < len(steps):
                self.dropped += len(steps) - max(room, 0)
                steps = steps[: max(room, 0)]
            self._pending.extend(steps)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="authgate-flow-writer", daemon=True
                )
                self._thread.start()

    def _bounded(self, steps: Sequence[FlowStep]) -> Sequence[FlowStep]:
        """``steps``, or nothing when their client and reason, or their reason over every
        client, are flooding (lock held)."""
        last = steps[-1]
        second = int(self._monotonic())
        key = (last.client_id, last.reason)
        mine = _window(self._floods.get(key), second)
        overall = _window(self._reason_floods.get(last.reason), second)
        if mine[1] >= self._burst or overall[1] >= self._burst_overall:
            _remember(self._floods, key, (mine[0], mine[1], mine[2] + 1))
            _remember(self._reason_floods, last.reason, (overall[0], overall[1], overall[2] + 1))
            if len(self._uncounted) < self._max_pending:
                self._uncounted.extend(steps)
            return ()
        _remember(self._floods, key, (mine[0], mine[1] + 1, 0))
        _remember(self._reason_floods, last.reason, (overall[0], overall[1] + 1, 0))
        suppressed = {"suppressed": mine[2], "suppressed_overall": overall[2]}
        suppressed = {name: n for name, n in suppressed.items() if n}
        if suppressed:
            detail = {**last.detail, **suppressed}
            steps = [*steps[:-1], dataclasses.replace(last, detail=detail)]
        return steps

    def flush(self) -> None:
        """Write everything pending now (tests; shutdown)."""
        with self._write_lock:
            started = time.thread_time()
            try:
                self._write()
            finally:
                self.cpu_seconds += time.thread_time() - started

    def _write(self) -> None:
        """``flush`` under its lock."""
        with self._lock:
            batch, self._pending = self._pending, []
            uncounted, self._uncounted = self._uncounted, []
        if uncounted and self._on_written is not None:
            self._on_written(uncounted)
        if not batch:
            return
        try:
            self._store.record_flow_steps(batch)
        except (StoreUnavailableError, ValueError) as exc:
            with self._lock:
                self.dropped += len(batch)
            line = {"event": "flows.write_failed", "steps": len(batch), "reason": str(exc)}
            log.warning(json.dumps(line)[:500])
            return
        with self._lock:
            self.written += len(batch)
        if self._on_written is not None:
            self._on_written(batch)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        idle = 0
        while idle < _IDLE_ROUNDS:
            self._wake.wait(self._interval)
            try:
                self.flush()
            except Exception:  # never let the thread die with steps pending
                log.exception("flow writer failed")
            with self._lock:
                if self._closed:
                    self._thread = None
                    return
                if self._pending:
                    idle = 0
                    continue
                idle += 1
                if idle >= _IDLE_ROUNDS:
                    self._thread = None  # a later submit starts a new one
                    return


#: (the second, refusals recorded in it, refusals left out since the last one recorded)
_Window = tuple[int, int, int]


def _window(entry: _Window | None, second: int) -> _Window:
    """``entry`` in ``second``: its count starts again in a new second."""
    start, recorded, left_out = entry or (second, 0, 0)
    return (start, recorded, left_out) if start == second else (second, 0, left_out)


def _remember(floods: dict[K, _Window], key: K, window: _Window) -> None:
    if len(floods) >= 10_000 and key not in floods:
        floods.clear()  # bounded memory; the bound restarts
    floods[key] = window
