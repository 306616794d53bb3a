"""The load generators: wrk with bench/lua/bench.lua, or a small Python one for the smoke run.

Both take a `LoadSpec` and return a `LoadResult` with the same meaning: requests answered,
errors (socket errors, non-2xx statuses, bodies without the expected field), latency
percentiles. The Python generator is only for the smoke run when wrk is not installed; its
numbers are not comparable with wrk's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LUA = Path(__file__).resolve().parent.parent / "lua" / "bench.lua"


@dataclass(frozen=True)
class LoadSpec:
    mode: str  # static | pool | refresh
    method: str
    path: str
    body: str = ""
    basic: tuple[str, str] | None = None
    expect: str = ""  # a Lua pattern; only plain text and %s* are used
    file: Path | None = None
    record: Path | None = None
    stop_path: str = "/"


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p99_ms: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _auth(spec: LoadSpec) -> str:
    if spec.basic is None:
        return ""
    return base64.b64encode(f"{spec.basic[0]}:{spec.basic[1]}".encode()).decode()


def run_wrk(
    base_url: str,
    spec: LoadSpec,
    *,
    connections: int,
    duration: float,
    cpus: str | None,
) -> LoadResult:
    """One wrk run with one connection per thread (-t N -c N), so per-thread state is per
    connection."""
    args = [
        "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        base_url,
        "--",
        f"mode={spec.mode}",
        f"method={spec.method}",
        f"path={spec.path}",
        f"body={spec.body}",
        f"auth={_auth(spec)}",
        f"expect={spec.expect}",
        f"threads={connections}",
        f"file={spec.file or ''}",
        f"record={spec.record or ''}",
        f"stop_path={spec.stop_path}",
    ]
    if cpus:
        args = ["taskset", "-c", cpus, *args]
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=False)  # noqa: S603 (our own argument lists)
    line = next((row for row in done.stdout.splitlines() if row.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    requests = data["requests"] - data["ignored"]
    return LoadResult(
        requests=requests,
        duration_s=data["duration_us"] / 1e6,
        errors=data["errors"] + data["socket_errors"] + data["timeouts"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        extra={"p90_ms": data["p90_us"] / 1000, "max_ms": data["max_us"] / 1000},
    )


# The Python generator (smoke runs without wrk) -----------------------------------------------


def _lua_pattern_to_re(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace("%s\\*", r"\s*").replace("%s*", r"\s*"))


def _request(spec: LoadSpec, host: str, auth: str, body: str) -> bytes:
    head = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {host}"]
    if auth:
        head.append(f"Authorization: Basic {auth}")
    if spec.method == "POST":
        head.append("Content-Type: application/x-www-form-urlencoded")
        head.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


async def _response(reader: asyncio.StreamReader) -> tuple[int, str]:
    """The status and body of one response (Content-Length framed, as authgate answers)."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, (await reader.readexactly(length)).decode() if length else ""


async def _connection(
    host: str,
    port: int,
    spec: LoadSpec,
    items: list[str],
    deadline: float,
    latencies: list[float],
    counts: dict[str, int],
    record: list[str],
) -> None:
    expect = _lua_pattern_to_re(spec.expect) if spec.expect else None
    auth = _auth(spec)
    reader, writer = await asyncio.open_connection(host, port)
    current = items[0] if spec.mode == "refresh" and items else None
    position = 0
    try:
        while time.monotonic() < deadline:
            if spec.mode == "pool":
                if position >= len(items):
                    return
                body = spec.body.replace("{item}", items[position])
                position += 1
            elif spec.mode == "refresh":
                if current is None:
                    return
                body = spec.body.replace("{item}", current)
            else:
                body = spec.body
            request = _request(spec, f"{host}:{port}", auth, body)
            started = time.perf_counter()
            writer.write(request)
            status, text = await _response(reader)
            latencies.append(time.perf_counter() - started)
            counts["requests"] += 1
            ok = 200 <= status < 300 and (expect is None or expect.search(text) is not None)
            if spec.mode == "refresh":
                found = re.search(r'"refresh_token"\s*:\s*"([^"]+)"', text) if ok else None
                current = found.group(1) if found else None
                ok = current is not None
            if ok and spec.record is not None:
                found = re.search(r'"access_token"\s*:\s*"([^"]+)"', text)
                if found:
                    record.append(found.group(1))
            if not ok:
                counts["errors"] += 1
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        counts["errors"] += 1
    finally:
        writer.close()


async def _python_load(
    base_url: str, spec: LoadSpec, connections: int, duration: float
) -> tuple[LoadResult, list[str]]:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lines = spec.file.read_text().split() if spec.file else []
    shares = [lines[i::connections] for i in range(connections)]
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    record: list[str] = []
    started = time.monotonic()
    deadline = started + duration
    await asyncio.wait_for(
        asyncio.gather(
            *(
                _connection(host, port, spec, shares[i], deadline, latencies, counts, record)
                for i in range(connections)
            )
        ),
        timeout=duration + 30,
    )
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
        )

    result = LoadResult(counts["requests"], elapsed, counts["errors"], pct(0.5), pct(0.99))
    return result, record


def run_python(base_url: str, spec: LoadSpec, *, connections: int, duration: float) -> LoadResult:
    result, record = asyncio.run(_python_load(base_url, spec, connections, duration))
    if spec.record is not None:
        Path(f"{spec.record}.0").write_text("".join(f"{token}\n" for token in record))
    return result
