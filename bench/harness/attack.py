"""The "under attack" scenario: a well-behaved client's token latency alone, and while each
attack of the availability threat model runs beside it, against one `authgate serve` (SQLite,
one process, production settings but the rate limits the other scenarios switch off).

The well-behaved client asks for client_credentials tokens one after the other on one
keep-alive connection. Phases alternate (alone, attack, alone, attack, …) so drift of a shared
machine lands in both columns; the report compares each attack's p50/p99 with the median of
the alone phases. Every attack is bounded in workers and in time and talks only to loopback.

    python -m bench.harness --attack [--duration 10] [--attacks a,b] [--stem NAME]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from bench.harness import history
from bench.harness.flows import CSRF
from bench.harness.provision import RESOURCE_JWT, SCOPE, USERNAME
from bench.harness.systems import Launcher, Server

#: Hosts of the stalling document servers: loopback addresses other than the server's own,
#: so per-host caps see eight hosts, as an attacker with eight names would.
STALL_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]


@dataclass
class Attack:
    name: str
    what: str
    run: Callable[[Server, threading.Event, Counter[str]], None]


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    attack_outcomes: Counter[str] = field(default_factory=Counter)

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def well_behaved(server: Server, stop: threading.Event, phase: Phase) -> None:
    body = f"grant_type=client_credentials&resource={quote(RESOURCE_JWT, safe='')}&scope={SCOPE}"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=server.url, auth=server.basic, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                resp = client.post(server.paths.token, content=body, headers=headers)
                ok = resp.status_code == 200 and "access_token" in resp.json()
            except httpx.HTTPError:
                ok = False
            if ok:
                phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                phase.errors += 1


def _workers(count: int, target: Callable[[], None]) -> Iterator[threading.Thread]:
    for _ in range(count):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        yield thread


def _outcome(resp: httpx.Response) -> str:
    return str(resp.status_code)


def chunked_bodies(server: Server, stop: threading.Event, seen: Counter[str]) -> None:
    """8 workers each stream a 100 MiB chunked body to the token endpoint, again and again."""
    chunk = b"a" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(1600):  # 100 MiB
            if stop.is_set():
                return
            yield chunk

    def worker() -> None:
        while not stop.is_set():
            try:
                resp = httpx.post(
                    server.url + server.paths.token,
                    content=body(),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                    timeout=30,
                )
                seen[_outcome(resp)] += 1
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1

    for thread in list(_workers(8, worker)):
        thread.join()


@contextlib.contextmanager
def stall_servers() -> Iterator[list[str]]:
    """TCP listeners on 127.0.0.2–9 that accept and never answer (a document host that hangs)."""
    listeners: list[socket.socket] = []
    held: list[socket.socket] = []
    stop = threading.Event()
    origins = []
    for host in STALL_HOSTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sock.listen(1024)
        sock.settimeout(0.2)
        listeners.append(sock)
        origins.append(f"https://{host}:{sock.getsockname()[1]}")

    def accept(sock: socket.socket) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = sock.accept()
                held.append(conn)

    threads = [threading.Thread(target=accept, args=(s,), daemon=True) for s in listeners]
    for thread in threads:
        thread.start()
    try:
        yield origins
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for sock in listeners + held:
            sock.close()


def slow_documents(server: Server, stop: threading.Event, seen: Counter[str]) -> None:
    """64 workers name a fresh metadata-document URL on a hanging host per request: token
    requests and authorize requests, half each."""
    with stall_servers() as origins:

        def worker(index: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    client_id = f"{origins[(index + n) % len(origins)]}/{uuid.uuid4().hex}"
                    try:
                        if index % 2:
                            resp = client.post(
                                server.paths.token,
                                data={
                                    "grant_type": "authorization_code",
                                    "code": "x",
                                    "client_id": client_id,
                                    "code_verifier": "v" * 43,
                                },
                            )
                        else:
                            resp = client.get(
                                server.paths.authorize,
                                params={"client_id": client_id, "response_type": "code"},
                            )
                        seen[_outcome(resp)] += 1
                    except httpx.HTTPError as exc:
                        seen[type(exc).__name__] += 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def failed_sign_ins(server: Server, stop: threading.Event, seen: Counter[str]) -> None:
    """80 workers post wrong passwords for the benchmark user, each from its own session."""

    def worker() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            try:
                match = CSRF.search(client.get("/login").text)
            except httpx.HTTPError:
                match = None
            if match is None:
                seen["no sign-in page"] += 1
                return
            form = {"username": USERNAME, "password": "wrong-" + "x" * 20}
            form["csrf_token"] = match.group(1)
            while not stop.is_set():
                try:
                    resp = client.post("/login", data=form)
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1
                    continue
                seen[_outcome(resp)] += 1
                match = CSRF.search(resp.text)  # the page shown again carries a fresh token
                if match is not None:
                    form["csrf_token"] = match.group(1)

    for thread in list(_workers(80, worker)):
        thread.join()


# Complex only by the sum of its three small closures (open one, trickle, huge heads).
def slow_connections(server: Server, stop: threading.Event, seen: Counter[str]) -> None:  # noqa: C901
    """400 connections that send a request head one byte a second and never finish it, opened
    again when the server closes them; beside them, 4 workers send 1 MiB request heads."""
    host, port = server.url.removeprefix("http://").split(":")
    head = b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nX-Slow: "
    sockets: list[socket.socket | None] = [None] * 400

    def open_one() -> socket.socket | None:
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(head)
            sock.settimeout(0)
            seen["held open"] += 1
            return sock
        except OSError:
            seen["refused"] += 1
            return None

    def trickle() -> None:
        while not stop.is_set():
            for i, sock in enumerate(sockets):
                if stop.is_set():
                    break
                if sock is None:
                    sockets[i] = open_one()
                    continue
                try:
                    sock.send(b"a")
                except OSError:
                    seen["closed by server"] += 1
                    sock.close()
                    sockets[i] = open_one()
            stop.wait(1.0)

    def huge_heads() -> None:
        padding = "a" * (1 << 20)
        while not stop.is_set():
            try:
                resp = httpx.get(server.url + "/readyz", headers={"x-pad": padding}, timeout=30)
                seen[f"1 MiB head: {resp.status_code}"] += 1
            except httpx.HTTPError as exc:
                seen[f"1 MiB head: {type(exc).__name__}"] += 1

    threads = [threading.Thread(target=trickle, daemon=True)]
    threads += list(_workers(4, huge_heads))
    threads[0].start()
    for thread in threads:
        thread.join()
    for sock in sockets:
        if sock is not None:
            sock.close()


ATTACKS = [
    Attack("chunked_bodies", "8 × 100 MiB chunked token-request bodies", chunked_bodies),
    Attack(
        "slow_documents",
        "64 × token/authorize naming a fresh document URL on hanging hosts",
        slow_documents,
    ),
    Attack("failed_sign_ins", "80 × wrong-password sign-ins (production Argon2)", failed_sign_ins),
    Attack(
        "slow_connections",
        "400 never-finished request heads + 4 × 1 MiB heads",
        slow_connections,
    ),
]


def run_phase(server: Server, name: str, duration: float, attack: Attack | None) -> Phase:
    phase = Phase(name)
    stop = threading.Event()
    attacker = None
    if attack is not None:
        attacker = threading.Thread(
            target=attack.run, args=(server, stop, phase.attack_outcomes), daemon=True
        )
        attacker.start()
        time.sleep(min(2.0, duration / 4))  # let the attack reach its full weight first
    client_stop = threading.Event()
    client = threading.Thread(target=well_behaved, args=(server, client_stop, phase), daemon=True)
    client.start()
    time.sleep(duration)
    client_stop.set()
    client.join(timeout=120)
    stop.set()
    if attacker is not None:
        attacker.join(timeout=120)
    return phase


def start_server(launcher: Launcher) -> Server:
    return launcher.authgate(
        "attack-sqlite",
        database_url="",
        workers=1,
        cpus="0" if (os.cpu_count() or 1) >= 2 else None,
        settings={"AUTHGATE_FETCH_ALLOW_HOSTS": ",".join(STALL_HOSTS)},
    )


def measure(launcher: Launcher, duration: float, names: list[str]) -> dict[str, Any]:
    if (os.cpu_count() or 1) >= 2:  # the load on the other core than the server's
        os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
    server = start_server(launcher)
    attacks = [a for a in ATTACKS if a.name in names]
    phases: list[Phase] = [run_phase(server, "alone", duration, None)]
    for attack in attacks:
        print(f"[{time.strftime('%H:%M:%S')}] attack {attack.name}", flush=True)
        phases.append(run_phase(server, attack.name, duration, attack))
        phases.append(run_phase(server, "alone", duration, None))
    alone = [p for p in phases if p.name == "alone"]
    base_p50 = statistics.median(p.pct(0.5) for p in alone)
    base_p99 = statistics.median(p.pct(0.99) for p in alone)
    rows = []
    for attack in attacks:
        phase = next(p for p in phases if p.name == attack.name)
        rows.append(
            {
                "attack": attack.name,
                "what": attack.what,
                "requests": len(phase.latencies_ms),
                "errors": phase.errors,
                "p50_ms": phase.pct(0.5),
                "p99_ms": phase.pct(0.99),
                "p99_ratio": phase.pct(0.99) / base_p99,
                "attack_outcomes": dict(phase.attack_outcomes.most_common(6)),
            }
        )
    return {
        "duration_s": duration,
        "alone": {
            "p50_ms": base_p50,
            "p99_ms": base_p99,
            "phases": [
                {"requests": len(p.latencies_ms), "errors": p.errors, "p99_ms": p.pct(0.99)}
                for p in alone
            ],
        },
        "attacks": rows,
    }


def markdown(result: dict[str, Any], date: str) -> str:
    alone = result["alone"]
    lines = [
        f"# authgate under attack — {date}",
        "",
        f"Commit {result['meta']['commit']}, machine {result['meta']['machine']}.",
        "",
        "A well-behaved client's client_credentials token requests (one keep-alive connection, "
        f"one request at a time, {result['duration_s']:g} s per phase) alone and while each "
        "attack runs beside it; one `authgate serve` on SQLite, server on core 0, client and "
        "attackers on the other core. Target: p99 under attack within 2× of p99 alone.",
        "",
        f"Alone: p50 {alone['p50_ms']:.1f} ms, p99 {alone['p99_ms']:.1f} ms (median of "
        f"{len(alone['phases'])} phases, "
        f"errors {sum(p['errors'] for p in alone['phases'])}).",
        "",
        "| attack | what | client requests | client errors | p50 ms | p99 ms | p99 / alone | "
        "what the attack got |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["attacks"]:
        outcomes = ", ".join(f"{k}: {v}" for k, v in row["attack_outcomes"].items())
        lines.append(
            f"| `{row['attack']}` | {row['what']} | {row['requests']} | {row['errors']} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['p99_ratio']:.2f} | {outcomes} |"
        )
    return "\n".join(lines) + "\n"


def run(work: Path, out_dir: Path, stem: str, duration: float, names: list[str]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "attack-sqlite", ignore_errors=True)  # a fresh database per run
    launcher = Launcher(work)
    try:
        result = measure(launcher, duration, names)
    finally:
        launcher.stop_all()
    date = time.strftime("%Y-%m-%d")
    result["meta"] = {"date": date, "commit": history.commit(), "machine": history.machine()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem or 'under-attack'}.md"
    path.write_text(markdown(result, date))
    path.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    figures = ", ".join(f"{r['attack']} p99 ×{r['p99_ratio']:.1f}" for r in result["attacks"])
    history.add_row(
        out_dir,
        date=date,
        commit=result["meta"]["commit"],
        setup=path.stem,
        machine=result["meta"]["machine"],
        figures=f"alone p99 {result['alone']['p99_ms']:.1f} ms; {figures}",
    )
    return path
