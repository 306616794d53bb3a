"""The "under attack" scenario: a well-behaved client's token latency alone, and while each
attack of the availability threat model runs beside it, against one `authgate serve` (SQLite,
one process, production settings but the rate limits the other scenarios switch off).

The well-behaved client asks for client_credentials tokens one after the other on one
keep-alive connection. Each attack runs in a process of its own (spawned, at a lower CPU
priority than the client): the attacker's threads, event handling and interpreter lock are
not the client's, so what the client measures is the server's answer, not a client-side
queue. Phases alternate (alone, attack, alone, attack, …, ``rounds`` times over the attacks)
so drift of a shared machine lands in both columns; each attack phase is compared with the
alone phases just before and after it, and the report gives the median over the rounds.
Every attack is bounded in workers and in time and talks only to loopback.

    python -m bench.harness --attack [--duration 8] [--rounds 3] [--attacks a,b] [--stem NAME]
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
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
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from bench.harness import history, procstat
from bench.harness.flows import CSRF
from bench.harness.provision import RESOURCE_JWT, SCOPE, USERNAME
from bench.harness.systems import Launcher, Paths, Server

#: Hosts of the stalling document servers: loopback addresses other than the server's own,
#: so per-host caps see eight hosts, as an attacker with eight names would.
STALL_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]
#: The address the attackers connect from: on the internet an attacker is not at the
#: well-behaved client's address (127.0.0.1), and the server's per-source limits and fair
#: shares (web/fairness.py) tell sources apart, as they would there.
ATTACKER_ADDRESS = "127.0.0.20"
#: The attacker process's nice value: it shares a core with the well-behaved client, whose
#: requests should not wait for the attacker's own Python to be scheduled (on the internet
#: the attacker is another machine).
ATTACKER_NICE = 10
#: Seconds the attack runs before the client starts, so the client meets its full weight.
ATTACK_WARMUP = 2.0
#: Seconds an attacker process gets to stop its workers before it is terminated.
ATTACK_STOP_GRACE = 30.0


class Stop(Protocol):
    """A ``threading.Event`` or a ``multiprocessing`` one: what an attack watches to end."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Target:
    """What an attacker needs of the server (picklable, for the attacker process)."""

    url: str
    paths: Paths


@dataclass
class Attack:
    name: str
    what: str
    run: Callable[[Target, Stop, Counter[str]], None]


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    attack_outcomes: Counter[str] = field(default_factory=Counter)
    #: Server CPU time, and time its threads waited for a CPU, per second of the phase.
    server_cpu: float = 0.0
    server_wait: float = 0.0

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


def attacker_client(**options: Any) -> httpx.Client:
    """An HTTP client of the attacker: connecting from ``ATTACKER_ADDRESS``."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=ATTACKER_ADDRESS), **options)


def _outcome(resp: httpx.Response) -> str:
    return str(resp.status_code)


def chunked_bodies(server: Target, stop: Stop, seen: Counter[str]) -> None:
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
                with attacker_client(timeout=30) as client:
                    resp = client.post(
                        server.url + server.paths.token,
                        content=body(),
                        headers={"content-type": "application/x-www-form-urlencoded"},
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


def slow_documents(server: Target, stop: Stop, seen: Counter[str]) -> None:
    """64 workers name a fresh metadata-document URL on a hanging host per request: token
    requests and authorize requests, half each."""
    with stall_servers() as origins:

        def worker(index: int) -> None:
            with attacker_client(base_url=server.url, timeout=60) as client:
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


def failed_sign_ins(server: Target, stop: Stop, seen: Counter[str]) -> None:
    """80 workers post wrong passwords for the benchmark user, each from its own session."""

    def worker() -> None:
        with attacker_client(base_url=server.url, timeout=60) as client:
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
def slow_connections(server: Target, stop: Stop, seen: Counter[str]) -> None:  # noqa: C901
    """400 connections that send a request head one byte a second and never finish it, opened
    again when the server closes them; beside them, 4 workers send 1 MiB request heads."""
    host, port = server.url.removeprefix("http://").split(":")
    head = b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nX-Slow: "
    sockets: list[socket.socket | None] = [None] * 400

    def open_one() -> socket.socket | None:
        try:
            sock = socket.create_connection(
                (host, int(port)), timeout=5, source_address=(ATTACKER_ADDRESS, 0)
            )
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
                with attacker_client(timeout=30) as client:
                    resp = client.get(server.url + "/readyz", headers={"x-pad": padding})
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


def busy_clients(server: Target, stop: Stop, seen: Counter[str]) -> None:
    """A control, not an attack: 64 workers fetch the server metadata (the cheapest endpoint)
    as fast as it answers. What any 64 concurrent clients cost the well-behaved one on the
    server's one core: the part of an attack's figure that is load, not the attack."""

    def worker() -> None:
        with attacker_client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    seen[_outcome(client.get(server.paths.metadata))] += 1
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1

    for thread in list(_workers(64, worker)):
        thread.join()


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
#: Run only when named (``--attacks busy_clients``): a yardstick for the attacks' figures.
CONTROLS = [
    Attack("busy_clients", "control: 64 × server metadata, as fast as answered", busy_clients)
]


def _attacker(conn: Any) -> None:
    """The attacker process, apart from the client (its own interpreter, threads and a lower
    priority), started once per run: for each ``(name, target)`` received, run that attack
    until told to stop, then send back what it got. Exits when told to, or when an attack
    did not stop in time (the harness then starts a fresh one)."""
    with contextlib.suppress(OSError):
        os.nice(ATTACKER_NICE)
    while True:
        order = conn.recv()
        if order is None:
            return
        name, target = order
        attack = next(a for a in ATTACKS + CONTROLS if a.name == name)
        stop, seen = threading.Event(), Counter[str]()
        runner = threading.Thread(target=attack.run, args=(target, stop, seen), daemon=True)
        runner.start()
        conn.send("started")
        conn.recv()  # stop
        stop.set()
        runner.join(timeout=ATTACK_STOP_GRACE)
        if runner.is_alive():
            seen["attacker did not stop"] += 1
            conn.send(dict(seen))
            return
        conn.send(dict(seen))


class Attacker:
    """The harness's handle on the attacker process (started on first use, stopped by its
    handle at the end of the run)."""

    def __init__(self) -> None:
        self._spawn = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def start(self, attack: Attack, target: Target) -> None:
        if self._proc is None or not self._proc.is_alive():
            self._conn, child = self._spawn.Pipe()
            self._proc = self._spawn.Process(target=_attacker, args=(child,), daemon=True)
            self._proc.start()
        self._conn.send((attack.name, target))
        if not self._conn.poll(60) or self._conn.recv() != "started":
            raise RuntimeError(f"the attacker process did not start {attack.name}")

    def stop(self) -> Counter[str]:
        self._conn.send("stop")
        if not self._conn.poll(ATTACK_STOP_GRACE + 10):
            self.close()
            return Counter({"attacker did not stop": 1})
        return Counter(self._conn.recv())

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():  # our own child, by its handle
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._proc = None


def run_phase(
    server: Server, name: str, duration: float, attack: Attack | None, attacker: Attacker
) -> Phase:
    phase = Phase(name)
    if attack is not None:
        attacker.start(attack, Target(server.url, server.paths))
        time.sleep(min(ATTACK_WARMUP, duration / 4))  # the attack reaches its full weight
    client_stop = threading.Event()
    client = threading.Thread(target=well_behaved, args=(server, client_stop, phase), daemon=True)
    pid = server.proc.pid
    cpu, wait = procstat.cpu_seconds(pid), procstat.runqueue_wait_seconds(pid)
    started = time.time()
    client.start()
    time.sleep(duration)
    client_stop.set()
    client.join(timeout=120)
    seconds = time.time() - started
    phase.server_cpu = (procstat.cpu_seconds(pid) - cpu) / seconds
    phase.server_wait = (procstat.runqueue_wait_seconds(pid) - wait) / seconds
    if attack is not None:
        phase.attack_outcomes.update(attacker.stop())
    return phase


def start_server(launcher: Launcher) -> Server:
    return launcher.authgate(
        "attack-sqlite",
        database_url="",
        workers=1,
        cpus="0" if (os.cpu_count() or 1) >= 2 else None,
        settings={"AUTHGATE_FETCH_ALLOW_HOSTS": ",".join(STALL_HOSTS)},
    )


def _attack_row(attack: Attack, phases: list[Phase]) -> dict[str, Any]:
    """One attack over the rounds: each of its phases against the alone phases beside it
    (measured minutes apart at most), then the medians over the rounds."""
    rounds = []
    outcomes: Counter[str] = Counter()
    for i, phase in enumerate(phases):
        if phase.name != attack.name:
            continue
        beside = [p for p in (phases[i - 1], phases[i + 1]) if p.latencies_ms]
        alone_p50 = statistics.median(p.pct(0.5) for p in beside)
        alone_p99 = statistics.median(p.pct(0.99) for p in beside)
        rounds.append(
            {
                "requests": len(phase.latencies_ms),
                "errors": phase.errors,
                "p50_ms": phase.pct(0.5),
                "p99_ms": phase.pct(0.99),
                "alone_p50_ms": alone_p50,
                "alone_p99_ms": alone_p99,
                "p99_ratio": phase.pct(0.99) / alone_p99,
                "server_cpu": phase.server_cpu,
                "server_wait": phase.server_wait,
            }
        )
        outcomes.update(phase.attack_outcomes)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    return {
        "attack": attack.name,
        "what": attack.what,
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "alone_p99_ms": median("alone_p99_ms"),
        "p99_ratio": median("p99_ratio"),
        "server_cpu": median("server_cpu"),
        "server_wait": median("server_wait"),
        "rounds": rounds,
        "attack_outcomes": dict(outcomes.most_common(6)),
    }


def measure(launcher: Launcher, duration: float, names: list[str], rounds: int) -> dict[str, Any]:
    if (os.cpu_count() or 1) >= 2:  # the load on the other core than the server's
        os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
    server = start_server(launcher)
    attacks = [a for a in ATTACKS + CONTROLS if a.name in names]
    load_before = os.getloadavg()
    attacker = Attacker()
    try:
        phases: list[Phase] = [run_phase(server, "alone", duration, None, attacker)]
        for n in range(rounds):
            for attack in attacks:
                now = time.strftime("%H:%M:%S")
                print(f"[{now}] round {n + 1}/{rounds}: {attack.name}", flush=True)
                phases.append(run_phase(server, attack.name, duration, attack, attacker))
                phases.append(run_phase(server, "alone", duration, None, attacker))
    finally:
        attacker.close()
    load_after = os.getloadavg()
    alone = [p for p in phases if p.name == "alone"]
    return {
        "duration_s": duration,
        "rounds": rounds,
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "alone": {
            "p50_ms": statistics.median(p.pct(0.5) for p in alone),
            "p99_ms": statistics.median(p.pct(0.99) for p in alone),
            "server_cpu": statistics.median(p.server_cpu for p in alone),
            "server_wait": statistics.median(p.server_wait for p in alone),
            "phases": [
                {"requests": len(p.latencies_ms), "errors": p.errors, "p99_ms": p.pct(0.99)}
                for p in alone
            ],
        },
        "attacks": [_attack_row(attack, phases) for attack in attacks],
    }


def _load(result: dict[str, Any]) -> str:
    """The machine's 1-minute load average before and after the run (others' work included)."""
    load = result["load_average"]
    return f"load {load['before'][0]:.1f}→{load['after'][0]:.1f}"


def markdown(result: dict[str, Any], date: str) -> str:
    alone = result["alone"]
    lines = [
        f"# authgate under attack — {date}",
        "",
        f"Commit {result['meta']['commit']}, machine {result['meta']['machine']}, 1-minute "
        f"{_load(result)} over the run (above 1 on 2 cores, other work shared the machine).",
        "",
        "A well-behaved client's client_credentials token requests (one keep-alive connection, "
        f"one request at a time, {result['duration_s']:g} s per phase) alone and while each "
        "attack runs beside it; one `authgate serve` on SQLite, server on core 0, client and "
        "attackers on the other core, each attack in a process of its own at a lower priority. "
        f"{result['rounds']} round(s) of alone, attack, alone, …: each attack phase is compared "
        "with the alone phases beside it, and the table gives the medians over the rounds. "
        "Target: p99 under attack within 2× of p99 alone.",
        "",
        f"Alone: p50 {alone['p50_ms']:.1f} ms, p99 {alone['p99_ms']:.1f} ms (median of "
        f"{len(alone['phases'])} phases, "
        f"errors {sum(p['errors'] for p in alone['phases'])}); server CPU "
        f"{alone['server_cpu']:.0%} of a core, its threads waiting for a CPU "
        f"{alone['server_wait']:.0%} of the time.",
        "",
        "Server CPU is the server's CPU time per second of the phase; CPU wait the time its "
        "threads were ready to run but waited for a core (others' work on the machine, or "
        "its own threads and the low-priority hashing threads on its one core).",
        "",
        "| attack | what | client requests | client errors | p50 ms | p99 ms | p99 alone beside "
        "| p99 / alone | per round | server CPU | CPU wait | what the attack got |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["attacks"]:
        outcomes = ", ".join(f"{k}: {v}" for k, v in row["attack_outcomes"].items())
        per_round = " ".join(f"{r['p99_ratio']:.2f}" for r in row["rounds"])
        lines.append(
            f"| `{row['attack']}` | {row['what']} | {row['requests']} | {row['errors']} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['alone_p99_ms']:.1f} | "
            f"{row['p99_ratio']:.2f} | {per_round} | {row['server_cpu']:.0%} | "
            f"{row['server_wait']:.0%} | {outcomes} |"
        )
    return "\n".join(lines) + "\n"


def run(
    work: Path, out_dir: Path, stem: str, duration: float, names: list[str], rounds: int
) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "attack-sqlite", ignore_errors=True)  # a fresh database per run
    launcher = Launcher(work)
    try:
        result = measure(launcher, duration, names, rounds)
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
        figures=f"alone p99 {result['alone']['p99_ms']:.1f} ms; {figures}; {_load(result)}",
    )
    return path
