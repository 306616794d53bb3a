"""A running authgate for the attacks: the test's app served by uvicorn on a loopback port, so
each attack travels over real HTTP, as an outsider mounts it, while the test still reads the
database and moves the clock of the same services.

Requests go through the suite's leak checker (tests/leaks.py) like those of the in-process
client. Attacks that cross nodes use two `authgate serve` processes on one PostgreSQL instead
(tests/procs.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from authgate.app import Services, create_app
from authgate.config import Settings
from tests.leaks import RECORDER, Recorder


class _Recorded(httpx.HTTPTransport):
    """Real HTTP, seen by the leak checker."""

    def __init__(self, recorder: Recorder | None) -> None:
        super().__init__()
        self._recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        send = super().handle_request
        if self._recorder is None:
            return send(request)
        received: list[httpx.Response] = []

        def read(sent: httpx.Request) -> httpx.Response:
            response = send(sent)
            response.read()
            received.append(response)
            return response

        seen = self._recorder.send(read, request)
        # The checker hands back a copy built on the test client's stream type: answer with
        # the bytes that arrived instead.
        return httpx.Response(
            seen.status_code,
            headers=seen.headers,
            content=received[0].content,
            request=request,
            extensions=seen.extensions,
        )


@dataclass
class Live:
    """The address of the running server and clients that talk to it over a socket."""

    url: str
    recorder: Recorder | None

    def client(self, **options: Any) -> httpx.Client:
        """A new HTTP client (its own cookie jar: one browser, or one attacker)."""
        return httpx.Client(
            base_url=self.url,
            follow_redirects=False,
            timeout=30,
            transport=_Recorded(self.recorder),
            **options,
        )


@pytest.fixture
def live(request: pytest.FixtureRequest, settings: Settings, services: Services) -> Iterator[Live]:
    app = create_app(settings, services=services)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live authgate did not start")
        time.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{port}", request.node.stash.get(RECORDER, None))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
