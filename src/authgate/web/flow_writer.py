"""Writes the flow steps requests record, in batches, off the request path (core/flows.py).

A request only appends its trace to a list under a lock; a thread of this process takes what
has gathered every ``interval`` seconds, makes its rows and writes them in one transaction (on
SQLite one group commit, on PostgreSQL one round trip per statement). The interval is short
(0.1 s): preparing a batch's rows is Python work that holds the interpreter lock, and batches
of 0.2 s (about 400 steps under load) held it long enough to add 4–5 ms to the 99th percentile
of token requests; 0.1 s added about 3 ms. Shorter still saved little more and cost more
commits (0.05 s: the writer's share of the server's CPU 2.7 % instead of 2.5 % for cc_jwt). The
three runs are in the commit that chose 0.1 s.

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
from datetime import datetime
from typing import TypeVar

from authgate.core import flows
from authgate.core.flows import FlowStep, Trace
from authgate.core.policy import SystemClock
from authgate.core.ports import Clock, Store, StoreUnavailableError

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
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        # Called in the writing thread with each batch written (the refusal metrics: reading
        # a client's label may read the database, which a request must not wait for).
        self._on_written = on_written
        self._interval = interval
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Requests' traces whose rows are still to be made, and how many steps they hold.
        self._handed: list[_Handed] = []
        self._handed_steps = 0
        self._now = (clock or SystemClock()).now
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

    def hand_over(self, trace: Trace, *, bounded: bool = False) -> None:
        """Queue one request's trace (it has steps; nothing records into it any more), with
        the time it was handed over at; its rows are made in the writing thread, not in the
        request. ``bounded``: a refusal is flood-bounded even when tied to a flow
        (core/flows.py ``untied_refusal``). Beyond ``max_pending`` its last steps are dropped.

        Making the rows (ids, a ``FlowStep`` per step) took about 6 µs in a loop but 45 µs of
        a loaded server's request, where that code and its data are out of the processor's
        caches; in the writer's batch, about 10 µs a row."""
        entry = (trace, self._now(), time.time_ns(), bounded, self._monotonic())
        with self._lock:
            room = self._room()
            if room < len(trace.steps):
                self.dropped += len(trace.steps) - max(room, 0)
                if room <= 0:
                    return
                del trace.steps[room:]
            self._handed.append(entry)
            self._handed_steps += len(trace.steps)
            self._start()

    def _room(self) -> int:
        """How many more steps may be pending (lock held)."""
        return self._max_pending - self._handed_steps

    def _start(self) -> None:
        """Start the writing thread if none runs (lock held)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="authgate-flow-writer", daemon=True
            )
            self._thread.start()

    def _bounded(self, steps: Sequence[FlowStep], when: float) -> Sequence[FlowStep]:
        """``steps``, or nothing when their client and reason, or their reason over every
        client, are flooding in the second of ``when`` (``monotonic``) (lock held)."""
        last = steps[-1]
        second = int(when)
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

    def flush(self) -> int:
        """Write everything pending now (tests; shutdown); how many traces it took."""
        with self._write_lock:
            started = time.thread_time()
            try:
                return self._write()
            finally:
                self.cpu_seconds += time.thread_time() - started

    def _write(self) -> int:
        """``flush`` under its lock."""
        with self._lock:
            handed, self._handed, self._handed_steps = self._handed, [], 0
        taken = len(handed)
        batch = [step for entry in handed for step in self._rows(*entry)]
        with self._lock:
            uncounted, self._uncounted = self._uncounted, []
        if uncounted and self._on_written is not None:
            self._on_written(uncounted)
        if not batch:
            return taken
        try:
            self._store.record_flow_steps(batch)
        except (StoreUnavailableError, ValueError) as exc:
            with self._lock:
                self.dropped += len(batch)
            line = {"event": "flows.write_failed", "steps": len(batch), "reason": str(exc)}
            log.warning(json.dumps(line)[:500])
            return taken
        with self._lock:
            self.written += len(batch)
        if self._on_written is not None:
            self._on_written(batch)
        return taken

    def _rows(
        self, trace: Trace, at: datetime, seq: int, bounded: bool, when: float
    ) -> Sequence[FlowStep]:
        """The rows of a trace handed over (nothing when its refusal is flooding)."""
        steps = flows.steps_of(trace, at, seq)
        if not flows.untied_refusal(trace, bounded):
            return steps
        with self._lock:
            return self._bounded(steps, when)

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
            taken = 0
            try:
                taken = self.flush()
            except Exception:  # never let the thread die with steps pending
                log.exception("flow writer failed")
            with self._lock:
                if self._closed:
                    self._thread = None
                    return
                if taken or self._handed:
                    idle = 0
                    continue
                idle += 1
                if idle >= _IDLE_ROUNDS:
                    self._thread = None  # a later hand-over starts a new one
                    return


#: A trace handed over: the trace, when (``at``, ``seq``), bounded, and ``monotonic`` then.
_Handed = tuple[Trace, datetime, int, bool, float]

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
