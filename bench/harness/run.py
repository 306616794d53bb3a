"""One benchmark run: start the systems, interleave them round by round over the scenarios,
measure server CPU and memory around every load run, then the growth test and the report."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from bench.harness import flows, growth, history, procstat, report
from bench.harness.load import LoadResult, LoadSpec, have_wrk, run_python, run_wrk
from bench.harness.provision import REDIRECT_URI, RESOURCE_JWT, RESOURCE_OPAQUE, SCOPE
from bench.harness.systems import (
    PEER_DIR,
    ROOT,
    Launcher,
    PostgresCluster,
    Server,
    node_binary,
    peer_installed,
    stop_process,
)

ALL_SCENARIOS = [
    "cc_jwt",
    "cc_opaque",
    "auth_code",
    "refresh",
    "introspect",
    "revoke",
    "jwks",
    "metadata",
    "interactive",
]
DEFAULT_SYSTEMS = [
    "authgate-sqlite",
    "authgate-pg",
    "oidc-provider",
    "floor",
    "authgate-sqlite-2w",
    "authgate-pg-2w",
    "floor-2w",
]
POOL_CAP = 300_000  # most codes or tokens minted for one load run
MINT_SECONDS_CAP = 60


#: The flow writer's processor time in an authgate process (web/metrics.py).
FLOW_WRITER_METRIC = "authgate_flow_writer_cpu_seconds_total"


def flow_writer_seconds(server: Server) -> float:
    """The flow writer's CPU seconds so far in a one-process authgate server that records
    flows; -1 for any other (the metrics of a process are its own)."""
    if server.kind != "authgate" or server.workers != 1:
        return -1.0
    try:
        text = httpx.get(server.url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(FLOW_WRITER_METRIC + " "):
            return float(line.split()[1])
    return -1.0


@dataclass
class Options:
    duration: float
    warmup: float
    rounds: int
    connections: int
    interactive_concurrency: int
    scenarios: list[str]
    systems: list[str]
    growth_sizes: list[int]
    growth_systems: list[str]
    loadgen: str
    pin: bool
    pg_port: int
    pg_url: str
    out_dir: Path
    work_dir: Path
    stem: str
    smoke: bool
    #: Load every system at once, all on the one server CPU, instead of one after the other.
    side_by_side: bool = False


@dataclass
class State:
    """What the harness keeps per system between load runs."""

    server: Server
    introspect_token: str = ""
    revoke_pool: list[str] = field(default_factory=list)
    estimates: dict[str, float] = field(default_factory=dict)  # scenario -> req/s


def _variant_settings(name: str) -> dict[str, str]:
    """Settings a system's name asks for: ``authgate-sqlite-normal`` is authgate-sqlite with
    commits not synced (``AUTHGATE_SQLITE_SYNCHRONOUS=normal``), to show what durability costs;
    ``…-noflows`` records no flow timeline (``AUTHGATE_FLOWS_ENABLED=false``), to show what
    recording costs."""
    settings: dict[str, str] = {}
    if "-normal" in name:
        settings["AUTHGATE_SQLITE_SYNCHRONOUS"] = "normal"
    if "-noflows" in name:
        settings["AUTHGATE_FLOWS_ENABLED"] = "false"
    return settings


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = (ROOT / options.work_dir).resolve()
        self.cpus = os.cpu_count() or 1
        self.use_wrk = options.loadgen == "wrk" or (options.loadgen == "auto" and have_wrk())
        if options.loadgen == "wrk" and not have_wrk():
            raise SystemExit("wrk is not installed (scripts/bench.sh installs it)")
        pin = options.pin and self.cpus >= 2 and shutil.which("taskset") is not None
        # One server process on core 0, the load generator on the last core. Two-worker
        # servers get every core but the load generator's when there are 3 or more.
        self.server_cpus = "0" if pin else None
        self.load_cpus = str(self.cpus - 1) if pin else None
        self.multi_cpus = f"0-{self.cpus - 2}" if pin and self.cpus >= 3 else None
        self.launcher = Launcher(self.work)
        self.pg = PostgresCluster(self.work, options.pg_port, options.pg_url or None)
        self.states: dict[str, State] = {}
        self.runs: list[dict[str, Any]] = []
        self.growth: list[dict[str, Any]] = []
        self.notes: list[str] = []

    # servers ---------------------------------------------------------------------------------

    def start(self, name: str) -> Server:
        workers = 2 if name.endswith("-2w") else 1
        cpus = self.server_cpus if workers == 1 else self.multi_cpus
        if name.startswith("authgate-") or name.startswith("growth-"):
            backend = "pg" if "-pg" in name else "sqlite"
            if backend == "pg":
                if not self.pg.url:
                    self.pg.start()
                database_url = self.pg.create_database(f"bench_{name.replace('-', '_')}")
            else:
                database_url = ""
            return self.launcher.authgate(
                name,
                database_url=database_url,
                workers=workers,
                cpus=cpus,
                db_pid=self.pg.postmaster_pid if backend == "pg" else None,
                settings=_variant_settings(name),
            )
        if name == "oidc-provider":
            return self.launcher.peer(name, cpus=cpus)
        if name.startswith("floor"):
            return self.launcher.floor(name, workers=workers, cpus=cpus)
        raise SystemExit(f"unknown system {name}")

    def wanted_systems(self) -> list[str]:
        names = []
        for name in self.o.systems:
            if name == "oidc-provider" and not peer_installed():
                msg = "node-oidc-provider is not installed (bench/peers/oidc-provider): skipped"
                self.notes.append(msg)
                log(msg)
                continue
            names.append(name)
        return names

    # load ------------------------------------------------------------------------------------

    def load(self, server: Server, spec: LoadSpec, duration: float) -> LoadResult:
        if self.use_wrk:
            return run_wrk(
                server.url,
                spec,
                connections=self.o.connections,
                duration=duration,
                cpus=self.load_cpus,
            )
        return run_python(server.url, spec, connections=self.o.connections, duration=duration)

    def pool_size(self, state: State, scenario: str, duration: float) -> int:
        if self.o.smoke:
            return 10 * self.o.connections
        rate = state.estimates.get(scenario)
        if rate is None:  # nothing measured yet: the issuance rate is a fair first guess
            rate = state.estimates.get("cc_opaque", 25 * self.o.connections / duration)
        need = math.ceil(rate * duration * 1.5) + 4 * self.o.connections
        return min(POOL_CAP, need)

    def write_pool(self, name: str, items: list[str]) -> Path:
        path = self.work / f"{name}.pool"
        path.write_text("".join(f"{item}\n" for item in items))
        return path

    def cc_body(self, resource: str) -> str:
        return f"grant_type=client_credentials&resource={quote(resource, safe='')}&scope={SCOPE}"

    def spec(self, state: State, scenario: str, duration: float) -> LoadSpec:
        s = state.server
        p = s.paths
        token = '"access_token"'
        if scenario == "cc_jwt":
            return LoadSpec("static", "POST", p.token, self.cc_body(RESOURCE_JWT), s.basic, token)
        if scenario == "cc_opaque":
            record = self.work / f"{s.name}.minted"
            return LoadSpec(
                "static",
                "POST",
                p.token,
                self.cc_body(RESOURCE_OPAQUE),
                s.basic,
                token,
                record=record,
            )
        if scenario == "auth_code":
            count = self.pool_size(state, scenario, duration)
            pkce = flows.new_pkce()
            if s.kind == "floor":  # its answers are constant: one code stands for all
                codes = flows.mint_codes(s, 1, pkce, 1) * count
            else:
                codes = flows.mint_codes(s, count, pkce)
            body = (
                "grant_type=authorization_code&code={item}"
                f"&redirect_uri={quote(REDIRECT_URI, safe='')}&code_verifier={pkce.verifier}"
            )
            return LoadSpec(
                "pool",
                "POST",
                p.token,
                body,
                s.basic,
                token,
                file=self.write_pool(f"{s.name}.codes", codes),
                stop_path=p.metadata,
            )
        if scenario == "refresh":
            tokens = flows.mint_refresh_tokens(s, self.o.connections)
            return LoadSpec(
                "refresh",
                "POST",
                p.token,
                "grant_type=refresh_token&refresh_token={item}",
                s.basic,
                token,
                file=self.write_pool(f"{s.name}.refresh", tokens),
                stop_path=p.metadata,
            )
        if scenario == "introspect":
            if not state.introspect_token:
                state.introspect_token = flows.client_credentials(s, RESOURCE_OPAQUE)
            return LoadSpec(
                "static",
                "POST",
                p.introspect,
                f"token={quote(state.introspect_token, safe='')}",
                s.basic,
                '"active"%s*:%s*true',
            )
        if scenario == "revoke":
            count = self.pool_size(state, scenario, duration)
            self.top_up_revoke_pool(state, count)
            tokens, state.revoke_pool = state.revoke_pool[:count], []
            return LoadSpec(
                "pool",
                "POST",
                p.revoke,
                "token={item}&token_type_hint=access_token",
                s.basic,
                "",
                file=self.write_pool(f"{s.name}.revoke", tokens),
                stop_path=p.metadata,
            )
        if scenario == "jwks":
            return LoadSpec("static", "GET", p.jwks, expect='"keys"')
        if scenario == "metadata":
            return LoadSpec("static", "GET", p.metadata, expect='"issuer"')
        raise ValueError(scenario)

    def collect_minted(self, state: State) -> None:
        for path in sorted(self.work.glob(f"{state.server.name}.minted.*")):
            state.revoke_pool += path.read_text().split()
            path.unlink()

    def top_up_revoke_pool(self, state: State, count: int) -> None:
        """Mint opaque tokens (client_credentials, not measured) until the pool holds `count`."""
        if state.server.kind == "floor" and state.revoke_pool:
            # The floor's answers are constant: the tokens it issued stand for any number.
            state.revoke_pool = (state.revoke_pool * (count // len(state.revoke_pool) + 1))[:count]
            return
        started = time.monotonic()
        while len(state.revoke_pool) < count:
            if time.monotonic() - started > MINT_SECONDS_CAP:
                break
            rate = state.estimates.get("cc_opaque", 200.0)
            seconds = min(20.0, max(1.0, (count - len(state.revoke_pool)) / rate * 1.2))
            spec = self.spec(state, "cc_opaque", seconds)
            self.load(state.server, spec, seconds)
            self.collect_minted(state)
        if state.server.kind == "floor" and state.revoke_pool:
            state.revoke_pool = (state.revoke_pool * (count // len(state.revoke_pool) + 1))[:count]

    # one measurement -------------------------------------------------------------------------

    def measure(self, state: State, scenario: str, duration: float) -> dict[str, Any]:
        return self.measure_with(
            state, scenario, self.load_spec(state, scenario, duration), duration
        )

    def load_spec(self, state: State, scenario: str, duration: float) -> LoadSpec | None:
        """``spec()``; None for the interactive flow, which drives itself."""
        return None if scenario == "interactive" else self.spec(state, scenario, duration)

    def measure_with(
        self, state: State, scenario: str, spec: LoadSpec | None, duration: float
    ) -> dict[str, Any]:
        """Drive one system with ``spec`` (made by ``spec()``; None: the interactive flow)."""
        s = state.server
        procstat.reset_peaks(s.proc.pid)
        writer0 = flow_writer_seconds(s)
        cpu0 = procstat.cpu_seconds(s.proc.pid)
        started = time.time()
        db0 = procstat.cpu_seconds(s.db_pid) if s.db_pid else 0.0
        if spec is None:
            result = flows.interactive(s, duration, self.o.interactive_concurrency)
        else:
            result = self.load(s, spec, duration)
        window = [started, time.time()]  # wall clock: side by side, the loads overlap
        cpu = procstat.cpu_seconds(s.proc.pid) - cpu0
        writer = flow_writer_seconds(s) - writer0 if writer0 >= 0 else -1.0
        db = procstat.cpu_seconds(s.db_pid) - db0 if s.db_pid else -1.0
        peak, peak_total = procstat.peak_rss_mb(s.proc.pid)
        if scenario == "cc_opaque":
            self.collect_minted(state)
        exhausted = spec is not None and spec.mode != "static" and result.requests < 1
        rps = result.rps
        requests = max(result.requests, 1)
        return {
            "scenario": scenario,
            "system": s.name,
            "rps": rps,
            "requests": result.requests,
            "duration_s": result.duration_s,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "errors": result.errors,
            "cpu_ms_per_req": cpu * 1000 / requests,
            "db_cpu_ms_per_req": db * 1000 / requests if db >= 0 else -1.0,
            "flow_writer_ms_per_req": writer * 1000 / requests if writer >= 0 else -1.0,
            "peak_rss_mb": peak,
            "peak_rss_total_mb": peak_total,
            "empty": exhausted,
            "window": window,
        }

    def measure_pool_aware(
        self, state: State, scenario: str, duration: float, row: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``measure()``, and the next pool's size from it (``row``: measured already)."""
        row = self.measure(state, scenario, duration) if row is None else row
        if scenario in ("auth_code", "revoke", "refresh"):
            # A thread that runs out of items stops early but wrk still divides by the whole
            # duration: the pool is sized from the last rate, and a run that used more than
            # 95% of its pool is flagged (its req/s is then a lower bound).
            used = row["requests"]
            size = self.pool_size(state, scenario, duration)
            row["pool_short"] = scenario != "refresh" and used >= 0.95 * size
            if row["pool_short"]:  # the rate is higher than the pool allowed: size up
                state.estimates[scenario] = max(row["rps"], 1.0) * 3
                return row
        state.estimates[scenario] = max(row["rps"], 1.0)
        return row

    # the run ---------------------------------------------------------------------------------

    def main_rounds(self, names: list[str]) -> None:
        if self.o.warmup > 0:
            log(f"warm-up: {self.o.warmup:g} s per scenario")
            for scenario in self.o.scenarios:
                for name in names:
                    self.measure_pool_aware(self.states[name], scenario, self.o.warmup)
        for round_no in range(self.o.rounds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for scenario in self.o.scenarios:
                if self.o.side_by_side:
                    rows = self.measure_together(order, scenario, self.o.duration)
                else:
                    rows = [
                        self.measure_pool_aware(self.states[name], scenario, self.o.duration)
                        for name in order
                    ]
                for name, row in zip(order, rows, strict=True):
                    row["round"] = round_no
                    self.runs.append(row)
                    log(
                        f"round {round_no + 1}/{self.o.rounds} {scenario:<11} {name:<20} "
                        f"{row['rps']:9.0f}/s p50 {row['p50_ms']:6.1f} ms p99 "
                        f"{row['p99_ms']:6.1f} ms errors {row['errors']}"
                    )

    def measure_together(
        self, names: list[str], scenario: str, duration: float
    ) -> list[dict[str, Any]]:
        """Every system driven at the same time, each by its own load generator, the servers
        sharing the one server CPU (``--side-by-side``): whatever else slows the machine down
        meanwhile (another tenant of a shared host) slows them all alike, so the ratio of
        their CPU per request is the ratio of their costs. Loads are prepared first (pools of
        codes or tokens), then started together."""
        states = [self.states[name] for name in names]
        specs = [self.load_spec(state, scenario, duration) for state in states]
        with concurrent.futures.ThreadPoolExecutor(len(states)) as pool:
            done = pool.map(
                lambda pair: self.measure_with(pair[0], scenario, pair[1], duration),
                zip(states, specs, strict=True),
            )
            rows = list(done)
        return [
            self.measure_pool_aware(state, scenario, duration, row)
            for state, row in zip(states, rows, strict=True)
        ]

    def growth_test(self) -> None:
        for base in self.o.growth_systems:
            name = base.replace("authgate-", "growth-")
            if base not in ("authgate-sqlite", "authgate-pg"):
                continue
            log(f"growth test on {name}")
            # The smoke run grows the main server's table instead of starting another.
            reuse = self.o.smoke and base in self.states
            server = self.states[base].server if reuse else self.start(name)
            state = self.states[base] if reuse else State(server)
            try:
                for size in sorted(self.o.growth_sizes):
                    started = time.monotonic()
                    added = growth.seed(server.database_url, server.client_id, RESOURCE_JWT, size)
                    log(
                        f"  {size:,} tokens stored ({added:,} added in "
                        f"{time.monotonic() - started:.0f} s)"
                    )
                    for round_no in range(self.o.rounds):
                        for scenario in ("cc_jwt", "introspect"):
                            row = self.measure(state, scenario, self.o.duration)
                            row.update(size=size, round=round_no, system=base)
                            self.growth.append(row)
                            log(
                                f"  {size:>9,} {scenario:<10} {row['rps']:8.0f}/s "
                                f"p99 {row['p99_ms']:.1f} ms errors {row['errors']}"
                            )
            finally:
                if not reuse:
                    self.launcher.running.remove(server.proc)
                    stop_process(server.proc)

    def meta(self) -> dict[str, Any]:
        versions = {"python": platform.python_version()}
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            for package in ("authgate", "uvicorn", "starlette", "fastapi", "sqlalchemy"):
                versions[package] = version(package)
        with contextlib.suppress(Exception):
            pkg = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
            versions["oidc-provider"] = json.loads(pkg.read_text())["version"]
            versions["node"] = subprocess.run(  # noqa: S603 (our own argument lists)
                [str(node_binary()), "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        with contextlib.suppress(Exception):
            versions["wrk"] = "4.1" if self.use_wrk else "-"
        model = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        if self.server_cpus:
            pinning = (
                f"1-worker servers on CPU {self.server_cpus}, load on CPU {self.load_cpus}; "
                + (
                    f"2-worker servers on CPUs {self.multi_cpus}"
                    if self.multi_cpus
                    else "2-worker servers not pinned (too few CPUs)"
                )
            )
        else:
            pinning = "none"
        return {
            "date": dt.date.today().isoformat(),
            "commit": history.commit(),
            "cpus": self.cpus,
            "cpu_model": model,
            "platform": f"{platform.system()} {platform.release()}",
            "loadgen": "wrk + bench/lua/bench.lua" if self.use_wrk else "Python (smoke only)",
            "connections": self.o.connections,
            "interactive_concurrency": self.o.interactive_concurrency,
            "duration": self.o.duration,
            "rounds": self.o.rounds,
            "pinning": pinning,
            "side_by_side": self.o.side_by_side,
            "versions": versions,
            "notes": self.notes,
        }

    def clean_work_dir(self) -> None:
        """Start from nothing: a run stopped hard may have left databases, pools, a cluster."""
        if not self.work.exists():
            self.work.mkdir(parents=True)
            return
        for entry in self.work.iterdir():
            if entry.name == "pg" and (entry / "data" / "PG_VERSION").exists():
                subprocess.run(  # noqa: S603 (our own argument list)
                    [str(ROOT / "scripts" / "pg.sh"), "stop", str(entry)],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def run(self) -> Path:
        self.clean_work_dir()
        names = self.wanted_systems()
        interrupted = False
        try:
            for name in names:
                log(f"starting {name}")
                self.states[name] = State(self.start(name))
            self.main_rounds(names)
            if self.o.growth_sizes:
                self.growth_test()
        except (KeyboardInterrupt, SystemExit):
            interrupted = True
            self.notes.append("Interrupted: the report holds the runs finished before.")
        finally:
            log("stopping servers")
            self.launcher.stop_all()
            self.pg.stop()
        names = [n for n in names if n in self.states]
        result = {
            "meta": self.meta(),
            "systems": [
                {
                    "name": n,
                    "kind": self.states[n].server.kind,
                    "backend": self.states[n].server.backend,
                    "workers": self.states[n].server.workers,
                }
                for n in names
            ],
            "runs": self.runs,
            "growth": self.growth,
        }
        written = report.write(result, (ROOT / self.o.out_dir).resolve(), self.o.stem or "latest")
        if interrupted:
            log(f"interrupted; partial report: {written}")
            raise SystemExit(130)
        return written


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run(options: Options) -> Path:
    if sys.platform != "linux":
        raise SystemExit("the benchmark reads /proc: Linux only")
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop what was started (a
    # shell may start a background job with SIGINT ignored: take it back).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    return Bench(options).run()
