"""`python -m bench.harness` (what scripts/bench.sh runs): start the systems, drive them round by
round with the same load, and write bench/results/latest.md, .png and .json. With
``--attack``, the "under attack" scenario instead (``bench/harness/attack.py``):
bench/results/under-attack.md and .json. Each run adds a row to bench/results/HISTORY.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import attack
from bench.harness.run import ALL_SCENARIOS, DEFAULT_SYSTEMS, Options, run

SMOKE_SCENARIOS = [
    "cc_jwt",
    "auth_code",
    "refresh",
    "introspect",
    "revoke",
    "metadata",
    "interactive",
]


def parse(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__)
    p.add_argument("--duration", type=float, default=10, help="seconds per scenario and run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per scenario")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--interactive-concurrency", type=int, default=4)
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    p.add_argument(
        "--growth-sizes",
        default="10000,100000,1000000",
        help="stored tokens for the growth test, comma-separated; empty skips it",
    )
    p.add_argument("--growth-systems", default="authgate-sqlite,authgate-pg")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--pg-port", type=int, default=55491)
    p.add_argument("--pg-url", default="", help="use databases on this server, not a cluster")
    p.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--work-dir", type=Path, default=Path("bench/work"))
    p.add_argument(
        "--stem", default="", help="the setup's report name (default: latest); see HISTORY.md"
    )
    p.add_argument(
        "--side-by-side",
        action="store_true",
        help="load every system at once, all sharing the one server CPU: their costs compared "
        "in the same seconds (each round's ratio of CPU per request)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long run that checks the harness works (CI)",
    )
    a = p.parse_args(argv)
    scenarios = [s for s in a.scenarios.split(",") if s]
    systems = [s for s in a.systems.split(",") if s]
    growth_sizes = [int(s) for s in a.growth_sizes.split(",") if s]
    growth_systems = [s for s in a.growth_systems.split(",") if s]
    duration, warmup, rounds = a.duration, a.warmup, a.rounds
    if a.smoke:
        duration, warmup, rounds = 1, 0, 1
        if a.scenarios == ",".join(ALL_SCENARIOS):
            scenarios = SMOKE_SCENARIOS
        if a.systems == ",".join(DEFAULT_SYSTEMS):
            systems = ["authgate-sqlite", "floor", "oidc-provider"]
        if a.growth_sizes == "10000,100000,1000000":
            growth_sizes = [200, 1000]
        if a.growth_systems == "authgate-sqlite,authgate-pg":
            growth_systems = ["authgate-sqlite"]
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return Options(
        duration=duration,
        warmup=warmup,
        rounds=rounds,
        connections=a.connections if not a.smoke else min(a.connections, 4),
        interactive_concurrency=a.interactive_concurrency,
        scenarios=scenarios,
        systems=systems,
        growth_sizes=growth_sizes,
        growth_systems=growth_systems,
        loadgen=a.loadgen,
        pin=not a.no_pin,
        pg_port=a.pg_port,
        pg_url=a.pg_url,
        out_dir=a.out_dir,
        work_dir=a.work_dir,
        stem=a.stem,
        smoke=a.smoke,
        side_by_side=a.side_by_side,
    )


def run_attack(argv: list[str]) -> Path:
    p = argparse.ArgumentParser(prog="scripts/bench.sh --attack", description=attack.__doc__)
    p.add_argument("--attack", action="store_true", required=True)
    p.add_argument("--duration", type=float, default=8, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=3, help="times each attack runs")
    p.add_argument("--attacks", default=",".join(a.name for a in attack.ATTACKS))
    p.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--work-dir", type=Path, default=Path("bench/work"))
    p.add_argument("--stem", default="", help="report name (default: under-attack)")
    p.add_argument("--smoke", action="store_true", help="seconds-long phases (CI)")
    a = p.parse_args(argv)
    names = [n for n in a.attacks.split(",") if n]
    unknown = set(names) - {x.name for x in attack.ATTACKS + attack.CONTROLS}
    if unknown:
        p.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    duration, rounds = (2, 1) if a.smoke else (a.duration, a.rounds)
    root = Path(__file__).resolve().parents[2]
    return attack.run(root / a.work_dir, root / a.out_dir, a.stem, duration, names, rounds)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--attack" in args:
        print(f"report: {run_attack(args)}")
        return 0
    report = run(parse(args))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
