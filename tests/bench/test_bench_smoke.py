"""The benchmark harness must not rot: a seconds-long run of it, and its report writer.

The smoke run starts authgate on SQLite and the floor (and node-oidc-provider when its npm
packages are installed), drives them with wrk when present or else the Python load
generator, runs a tiny growth test and writes a report. It needs no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.harness import report

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _row(scenario: str, system: str, rps: float, round_no: int = 0) -> dict[str, object]:
    return {
        "scenario": scenario,
        "system": system,
        "round": round_no,
        "rps": rps,
        "requests": int(rps * 5),
        "duration_s": 5.0,
        "p50_ms": 2.0,
        "p99_ms": 9.0,
        "errors": 0,
        "cpu_ms_per_req": 0.5,
        "db_cpu_ms_per_req": -1.0,
        "peak_rss_mb": 80.0,
        "peak_rss_total_mb": 80.0,
        "empty": False,
    }


def test_report_writer_shows_ratios_of_medians(tmp_path: Path) -> None:
    systems = [
        {"name": "authgate-sqlite", "kind": "authgate", "backend": "sqlite", "workers": 1},
        {"name": "oidc-provider", "kind": "peer", "backend": "memory", "workers": 1},
        {"name": "floor", "kind": "floor", "backend": "none", "workers": 1},
    ]
    runs = []
    for round_no, factor in enumerate((1.0, 1.1, 0.1)):  # the outlier round is not the median
        runs += [
            _row("cc_jwt", "authgate-sqlite", 1000 * factor, round_no),
            _row("cc_jwt", "oidc-provider", 500 * factor, round_no),
            _row("cc_jwt", "floor", 4000 * factor, round_no),
        ]
    growth = [
        {**_row("cc_jwt", "authgate-sqlite", 1000), "size": 10_000},
        {**_row("cc_jwt", "authgate-sqlite", 950), "size": 100_000},
    ]
    meta = {
        "date": "2030-01-01",
        "commit": "abc1234",
        "cpus": 2,
        "cpu_model": "test",
        "platform": "Linux",
        "loadgen": "wrk",
        "connections": 32,
        "interactive_concurrency": 4,
        "duration": 5,
        "rounds": 3,
        "pinning": "none",
        "versions": {"python": "3.11"},
        "notes": [],
    }
    result = {"meta": meta, "systems": systems, "runs": runs, "growth": growth}
    path = report.write(result, tmp_path, "2030-01-01")
    text = path.read_text()
    assert "| authgate-sqlite / oidc-provider | 2.00 |" in text
    assert "| authgate-sqlite / floor | 0.25 |" in text
    assert "| 100,000 | 950 |" in text
    assert "Commit abc1234." in text
    assert (tmp_path / "2030-01-01.json").exists()
    # Each run adds one row to the history: date, commit, setup, machine, key ratios.
    report.write(result, tmp_path, "2030-01-01")
    rows = [r for r in (tmp_path / "HISTORY.md").read_text().splitlines() if "abc1234" in r]
    assert len(rows) == 2
    assert rows[0].startswith("| 2030-01-01 | abc1234 | 2030-01-01 | 2 × test | ")
    assert "authgate-sqlite / oidc-provider: cc_jwt 2.00" in rows[0]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "2030-01-01.png").stat().st_size > 1000
    assert "![ratios](2030-01-01.png)" in text


def _harness(tmp_path: Path, stem: str, *args: str, timeout: float = 150) -> str:
    """Run ``python -m bench.harness`` with ``args``, its results and scratch files in
    ``tmp_path``; what it printed. It must succeed."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.harness",
            *args,
            "--out-dir",
            str(tmp_path / "results"),
            "--work-dir",
            str(tmp_path / "work"),
            "--stem",
            stem,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_smoke_run_of_the_harness(tmp_path: Path) -> None:
    printed = _harness(tmp_path, "smoke", "--smoke")
    text = (tmp_path / "results" / "smoke.md").read_text()
    for title in ("client_credentials, JWT", "refresh_token (rotation)", "revocation"):
        assert f"### {title}" in text
    assert "## Growth" in text
    # Every load run was answered and none had errors.
    assert "errors 0" in printed
    for line in printed.splitlines():
        if " round 1/1 " in line:
            assert line.rstrip().endswith("errors 0"), line


def test_smoke_run_of_the_under_attack_scenario(tmp_path: Path) -> None:
    _harness(tmp_path, "smoke", "--attack", "--smoke", timeout=240)
    result = json.loads((tmp_path / "results" / "smoke.json").read_text())
    assert [row["attack"] for row in result["attacks"]] == [
        "chunked_bodies",
        "slow_documents",
        "failed_sign_ins",
        "slow_connections",
    ]
    # The well-behaved client was answered in every phase, and every attack really ran.
    assert all(phase["requests"] > 0 for phase in result["alone"]["phases"])
    for row in result["attacks"]:
        assert row["requests"] > 0 and row["p99_ms"] > 0, row
        assert sum(row["attack_outcomes"].values()) > 0, row
    # Bodies are cut at the size limit, whatever their framing.
    assert "413" in result["attacks"][0]["attack_outcomes"]
    text = (tmp_path / "results" / "smoke.md").read_text()
    assert "| `failed_sign_ins` |" in text and "p99 / alone" in text


def test_durable_commits_are_compared_with_unsynced_ones() -> None:
    systems = [
        {"name": "authgate-sqlite", "kind": "authgate", "backend": "sqlite", "workers": 1},
        {"name": "authgate-sqlite-normal", "kind": "authgate", "backend": "sqlite", "workers": 1},
    ]
    runs = [
        _row("refresh", "authgate-sqlite", 900),
        _row("refresh", "authgate-sqlite-normal", 1000),
    ]
    scenarios, labels, rows = report.ratio_table({"systems": systems, "runs": runs})
    assert labels == ["authgate-sqlite / authgate-sqlite-normal"]
    assert scenarios == ["refresh"] and rows == [[0.9]]


def test_flows_on_and_off_are_compared_round_by_round() -> None:
    systems = [
        {"name": "authgate-sqlite", "kind": "authgate", "backend": "sqlite", "workers": 1},
        {"name": "authgate-sqlite-noflows", "kind": "authgate", "backend": "sqlite", "workers": 1},
    ]
    runs = []
    # The machine drifts from round to round; within each, flows on is 4 % slower but for
    # one round where a neighbour hit the other side.
    for round_no, (drift, ratio) in enumerate(((1.0, 0.96), (0.5, 0.96), (1.3, 0.96), (0.9, 1.2))):
        runs += [
            {**_row("cc_jwt", "authgate-sqlite", 1000 * drift * ratio, round_no)},
            {**_row("cc_jwt", "authgate-sqlite-noflows", 1000 * drift, round_no)},
        ]
    runs.append(_row("cc_jwt", "authgate-sqlite", 10, 9))  # a round without its pair: left out
    assert report.round_ratios(runs, "cc_jwt", "authgate-sqlite", "authgate-sqlite-noflows") == [
        pytest.approx(r) for r in (0.96, 0.96, 0.96, 1.2)
    ]
    scenarios, labels, _ = report.ratio_table({"systems": systems, "runs": runs})
    assert labels == ["authgate-sqlite / authgate-sqlite-noflows"]
    lines = report.flows_on_off_section({"systems": systems, "runs": runs}, scenarios)
    row = next(line for line in lines if "client_credentials, JWT" in line)
    assert row.startswith(
        "| authgate-sqlite / authgate-sqlite-noflows | client_credentials, JWT | 4 | -4.0% |"
    )


def test_smoke_run_side_by_side(tmp_path: Path) -> None:
    """``--side-by-side``: both systems are loaded at the same time, each by its own load
    generator, and each round's pair of runs is measured over the same seconds."""
    _harness(
        tmp_path,
        "side",
        "--smoke",
        "--side-by-side",
        "--systems",
        "authgate-sqlite,authgate-sqlite-noflows",
        "--scenarios",
        "cc_jwt",
        "--growth-sizes",
        "",
    )
    result = json.loads((tmp_path / "results" / "side.json").read_text())
    assert result["meta"]["side_by_side"] is True
    on, off = sorted((r for r in result["runs"] if r["round"] == 0), key=lambda r: r["system"])
    assert (on["system"], off["system"]) == ("authgate-sqlite", "authgate-sqlite-noflows")
    assert on["requests"] > 0 and off["requests"] > 0 and on["errors"] == off["errors"] == 0
    # The two loads ran over the same seconds, not one after the other.
    overlap = min(on["window"][1], off["window"][1]) - max(on["window"][0], off["window"][0])
    assert overlap > 0.8 * min(w[1] - w[0] for w in (on["window"], off["window"]))
    assert on["flow_writer_ms_per_req"] > 0 and off["flow_writer_ms_per_req"] == -1.0
    text = (tmp_path / "results" / "side.md").read_text()
    assert "with every system loaded at the same time" in text
    assert "Not checked: the systems shared the server CPU" in text
