"""Apps and their secrets as client authentication reads them, kept until the database says
they changed.

Every token, introspection and revocation request authenticates its client: a read of the app
and of the secret it presents, and the conversion of their rows. Those rows change seldom (an
operator, a registration, a metadata document's refresh), so each process keeps what it read
and forgets it when the database reports a change. Every INSERT, DELETE and UPDATE of ``apps``
and ``app_secrets`` is reported, whoever makes it (any authgate process or node, the CLI, a
database shell): migration 0005 installs triggers that

- on SQLite increment ``client_changes.generation``, which each lookup reads first: one small
  read instead of the joined one and its rows;
- on PostgreSQL send a notification with the app's id on the channel ``authgate_clients``,
  which a listener thread of each process receives (``ChangeListener``): no round trip at all.

The ``last_used_at`` columns are left out of the triggers (they are refreshed at most once a
minute or an hour per client, and would otherwise empty every cache that often); the process
that refreshes one updates its own copies (``touched_app``, ``touched_secret``), and another
process's copy may be older, so that it refreshes the column once more itself.

On PostgreSQL the cache is used only while the listener proves it is listening: every
``HEARTBEAT_SECONDS`` it notifies the channel itself and renews a lease when that notification
comes back, and once the lease runs out (a lost or stalled connection, a connection pooler that
does not pass notifications on) every lookup reads the database again, until the listener has
reconnected, listened again, forgotten everything and heard itself. Only what authenticates is
kept (an app, alone or with a secret of its own); an unknown client or a secret of another app
is read each time.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from authgate.core.models import App, AppSecret

log = logging.getLogger("authgate.storage")

#: The channel of the PostgreSQL triggers (migration 0005).
CHANNEL = "authgate_clients"
#: How often the listener proves it hears notifications, and how long that proof lasts.
HEARTBEAT_SECONDS = 1.0
#: The payload of a heartbeat: no app id starts with a space.
HEARTBEAT = " heartbeat"
LEASE_SECONDS = 3.0
#: Entries per process; the oldest goes first.
CAPACITY = 4096

Key = tuple[str, str | None]  # the app's id, and the prefix of the secret presented (or None)
Entry = tuple[App | None, AppSecret | None]


class ClientCache:
    """What ``get_app`` and ``get_app_and_secret`` returned, by their arguments.

    ``counter``: reads the SQLite change counter (None without one: the cache then relies on a
    listener's lease). Thread-safe: lookups read a dict, changes happen under a lock, and an
    entry read before a change is not stored after it (the generation).
    """

    def __init__(
        self,
        counter: Callable[[], int | None] | None,
        *,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = counter
        self._capacity = capacity
        self._clock = clock
        self._entries: dict[Key, Entry] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._seen: int | None = None  # the counter last read
        self._lease = math.inf if counter is not None else -math.inf

    def lookup(self, key: Key, load: Callable[[], Entry]) -> Entry:
        generation = self._usable()
        if generation is None:
            return load()
        entry = self._entries.get(key)
        if entry is not None:
            return _own_copy(entry)
        entry = load()
        app, secret = entry
        if app is not None and (key[1] is None or (secret is not None and secret.app_id == app.id)):
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= self._capacity:
                        del self._entries[next(iter(self._entries))]
                    self._entries[key] = entry
            return _own_copy(entry)
        return entry

    def _usable(self) -> int | None:
        """The generation the next read belongs to, or None if the cache may not be used."""
        if self._counter is not None:
            counter = self._counter()
            if counter is None:
                return None
            if counter != self._seen:
                with self._lock:
                    self._seen = counter
                    self._forget(None)
        elif self._clock() >= self._lease:
            return None
        return self._generation

    def changed(self, app_id: str | None) -> None:
        """The app (None: any app) changed: forget what was read of it."""
        with self._lock:
            self._forget(app_id)

    def _forget(self, app_id: str | None) -> None:
        self._generation += 1
        if app_id is None:
            self._entries.clear()
            return
        for key in [key for key in self._entries if key[0] == app_id]:
            del self._entries[key]

    def touched_app(self, app_id: str, at: datetime) -> None:
        self._update(lambda app, secret: (app.id == app_id, replace(app, last_used_at=at), secret))

    def touched_secret(self, secret_id: str, at: datetime) -> None:
        def touch(app: App, secret: AppSecret | None) -> tuple[bool, App, AppSecret | None]:
            if secret is None or secret.id != secret_id:
                return False, app, secret
            return True, app, replace(secret, last_used_at=at)

        self._update(touch)

    def _update(
        self, change: Callable[[App, AppSecret | None], tuple[bool, App, AppSecret | None]]
    ) -> None:
        with self._lock:
            for key, (app, secret) in list(self._entries.items()):
                assert app is not None
                hit, new_app, new_secret = change(app, secret)
                if hit:
                    self._entries[key] = (new_app, new_secret)

    def renew(self) -> None:
        """The listener has just proved it is listening."""
        self._lease = self._clock() + LEASE_SECONDS

    def lapse(self) -> None:
        """The listener stopped listening: what is kept, and what is read from now on, is not
        used."""
        with self._lock:
            self._lease = -math.inf
            self._forget(None)


def _own_copy(entry: Entry) -> Entry:
    """The entry, with a JWK Set of its own (the one mutable field: a reader may change it)."""
    app, secret = entry
    if app is not None and app.jwks is not None:
        app = replace(app, jwks=copy.deepcopy(app.jwks))
    return app, secret


class ChangeListener:
    """A thread that LISTENs on ``CHANNEL`` (PostgreSQL) and tells the cache what changed.

    ``connect`` opens a new DBAPI connection in autocommit mode. The thread starts on the first
    lookup of a process (not in a parent that forks workers) and stops with ``close()``.
    """

    def __init__(self, cache: ClientCache, connect: Callable[[], Any]) -> None:
        self._cache = cache
        self._connect = connect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Held by the thread while it runs a statement or waits on the connection: psycopg's
        # close() does not wait for them, and frees what they still use (the process crashed).
        self._using = threading.Lock()
        self._conn: Any = None
        self._failures = 0
        self._deaf = False  # the last heartbeat did not come back

    def ensure_started(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="authgate-client-changes", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop listening. The connection closes now when the thread is not using it; else the
        thread closes it as it ends, within ``HEARTBEAT_SECONDS``, when its wait for
        notifications times out."""
        self._stop.set()
        self._cache.lapse()
        if self._using.acquire(blocking=False):
            try:
                self._disconnect()
            finally:
                self._using.release()

    def _run(self) -> None:
        self._failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure: stop trusting the cache, then retry
                self._cache.lapse()
                if self._stop.is_set():
                    return
                self._failures += 1
                if self._failures == 1:
                    log.warning("not listening for client changes (%s); reading each time", exc)
                self._stop.wait(min(0.5 * self._failures, 5.0))
            finally:
                with self._using:
                    self._disconnect()

    def _listen(self) -> None:
        self._conn = conn = self._connect()
        with self._using:
            conn.execute(f"LISTEN {CHANNEL}")
        # Whatever changed while nobody listened: forget everything, then trust again.
        self._cache.changed(None)
        if self._failures:
            log.info("listening for client changes again")
        self._failures = 0
        beats = 0
        while not self._stop.is_set():
            # The heartbeat is a notification of our own. Notifications arrive in the order
            # their transactions committed, so once ours is back, every change committed before
            # it has been heard. One that never comes back (a pooler that does not pass them
            # on, a stalled connection) renews nothing, and the lease runs out.
            beats += 1
            beat = f"{HEARTBEAT} {os.getpid()} {id(self)} {beats}"
            heard = False
            with self._using:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, beat))
                for notify in conn.notifies(timeout=HEARTBEAT_SECONDS):
                    if self._stop.is_set():
                        break  # closed meanwhile: trust nothing it says any more
                    if notify.payload == beat:
                        heard = True
                        self._cache.renew()
                    elif not notify.payload.startswith(HEARTBEAT):  # not another's beat
                        self._cache.changed(notify.payload or None)
            if heard == self._deaf:
                self._deaf = not heard
                if self._deaf:
                    log.warning(
                        "no notification came back within %s s: reading clients from the "
                        "database until one does",
                        HEARTBEAT_SECONDS,
                    )
                else:
                    log.info("notifications come back again")

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):  # a broken connection is closed all the same
            conn.close()
