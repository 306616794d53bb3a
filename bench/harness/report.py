"""The Markdown report and the plot of the ratios, from the raw results of one run."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.harness import history

SCENARIO_TITLES = {
    "cc_jwt": "client_credentials, JWT",
    "cc_opaque": "client_credentials, opaque",
    "auth_code": "authorization_code exchange",
    "refresh": "refresh_token (rotation)",
    "introspect": "introspection",
    "revoke": "revocation",
    "jwks": "JWKS GET",
    "metadata": "metadata GET",
    "interactive": "interactive flow (per flow)",
}
TOKEN_SCENARIOS = {"cc_jwt", "cc_opaque", "auth_code", "refresh"}
STATIC_SCENARIOS = {"jwks", "metadata"}

Medians = dict[tuple[str, str], dict[str, float]]


def medians(runs: list[dict[str, Any]]) -> Medians:
    """Per (scenario, system): the median of every measured field over the rounds."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(run["scenario"], run["system"])].append(run)
    out: Medians = {}
    for key, rows in grouped.items():
        fields = [k for k, v in rows[0].items() if isinstance(v, int | float) and k != "round"]
        out[key] = {f: statistics.median(float(r[f]) for r in rows) for f in fields}
        out[key]["errors"] = float(sum(r["errors"] for r in rows))
        out[key]["rounds"] = float(len(rows))
    return out


def pairs(systems: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(label, authgate system, reference system) for every ratio the report shows."""
    names = {s["name"]: s for s in systems}
    out = []
    for system in systems:
        if system["kind"] != "authgate":
            continue
        if system["workers"] == 1 and "oidc-provider" in names:
            out.append((f"{system['name']} / oidc-provider", system["name"], "oidc-provider"))
        floor = "floor" if system["workers"] == 1 else f"floor-{system['workers']}w"
        if floor in names:
            out.append((f"{system['name']} / {floor}", system["name"], floor))
        relaxed = f"{system['name']}-normal"  # durable commits against unsynced ones
        if relaxed in names:
            out.append((f"{system['name']} / {relaxed}", system["name"], relaxed))
        quiet = f"{system['name']}-noflows"  # the flow timeline on against off
        if quiet in names:
            out.append((f"{system['name']} / {quiet}", system["name"], quiet))
    return out


def round_ratios(
    runs: list[dict[str, Any]], scenario: str, mine: str, theirs: str, field: str = "rps"
) -> list[float]:
    """``field`` of ``mine`` over that of ``theirs``, round by round: the two ran one after
    the other in each round, so what drifts over a run (another tenant of a shared machine)
    weighs on both sides of each ratio."""
    by_round: dict[int, dict[str, float]] = defaultdict(dict)
    for run in runs:
        if run["scenario"] == scenario and run["system"] in (mine, theirs):
            by_round[run["round"]][run["system"]] = float(run[field])
    return [
        pair[mine] / pair[theirs]
        for _, pair in sorted(by_round.items())
        if mine in pair and pair.get(theirs, 0) > 0
    ]


def ratio_table(result: dict[str, Any]) -> tuple[list[str], list[str], list[list[float | None]]]:
    med = medians(result["runs"])
    scenarios = [s for s in SCENARIO_TITLES if any(k[0] == s for k in med)]
    labels, rows = [], []
    for label, mine, theirs in pairs(result["systems"]):
        labels.append(label)
        row: list[float | None] = []
        for scenario in scenarios:
            a, b = med.get((scenario, mine)), med.get((scenario, theirs))
            row.append(a["rps"] / b["rps"] if a and b and b["rps"] > 0 else None)
        rows.append(row)
    return scenarios, labels, rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any], plot_name: str | None) -> str:
    meta = result["meta"]
    med = medians(result["runs"])
    systems = [s["name"] for s in result["systems"]]
    lines = [
        f"# authgate benchmark, {meta['date']}",
        "",
        f"Commit {meta.get('commit', 'unknown')}.",
        "",
        f"Machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['platform']}. "
        f"Load: {meta['loadgen']}, {meta['connections']} connections "
        f"(interactive flow: {meta['interactive_concurrency']}), {meta['duration']} s per "
        f"scenario, {meta['rounds']} rounds "
        + (
            "with every system loaded at the same time (side by side, sharing the server CPU), "
            if meta.get("side_by_side")
            else "interleaved, "
        )
        + f"medians shown. Pinning: {meta['pinning']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
    ]
    if meta.get("notes"):
        lines += [*(f"- {note}" for note in meta["notes"]), ""]
    scenarios, labels, rows = ratio_table(result)
    lines += ["## Ratios (requests/s, same run)", ""]
    lines.append("| | " + " | ".join(SCENARIO_TITLES[s] for s in scenarios) + " |")
    lines.append("|---|" + "---|" * len(scenarios))
    for label, row in zip(labels, rows, strict=True):
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in row) + " |")
    if plot_name:
        lines += ["", f"![ratios]({plot_name})"]
    lines += [
        "",
        "## Per scenario",
        "",
        "“≥” marks a run whose pool of codes or tokens ran out before the end (its rate is a "
        "lower bound). CPU is the server's user + system time per request; DB CPU that of "
        "the PostgreSQL cluster.",
        "",
    ]
    for scenario in scenarios:
        unit = "flows/s" if scenario == "interactive" else "req/s"
        lines += [
            f"### {SCENARIO_TITLES[scenario]}",
            "",
            f"| system | {unit} | p50 ms | p99 ms | errors | server CPU ms/req "
            "| DB CPU ms/req | peak RSS MB (largest process / all) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for system in systems:
            m = med.get((scenario, system))
            if m is None:
                continue
            db = _fmt(m["db_cpu_ms_per_req"], 3) if m.get("db_cpu_ms_per_req", -1) >= 0 else "–"
            short = "≥ " if m.get("pool_short", 0) > 0 else ""
            lines.append(
                f"| {system} | {short}{m['rps']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                f"{m['errors']:.0f} | {m['cpu_ms_per_req']:.3f} | {db} | "
                f"{m['peak_rss_mb']:.0f} / {m['peak_rss_total_mb']:.0f} |"
            )
        lines.append("")
    if result.get("growth"):
        lines += growth_section(result["growth"])
    lines += flows_on_off_section(result, scenarios)
    lines += flow_writer_section(scenarios, systems, med)
    lines += targets_section(result, med)
    return "\n".join(lines).rstrip() + "\n"


def growth_section(growth: list[dict[str, Any]]) -> list[str]:
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in growth:
        grouped[(row["system"], row["scenario"], row["size"])].append(row)
    lines = [
        "## Growth: cost with tokens already stored",
        "",
        "| system | scenario | stored tokens | req/s | p50 ms | p99 ms | errors "
        "| req/s vs smallest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple[str, str], float] = {}
    for (system, scenario, size), rows in sorted(grouped.items()):
        rps = statistics.median(r["rps"] for r in rows)
        base.setdefault((system, scenario), rps)
        first = base[(system, scenario)]
        lines.append(
            f"| {system} | {SCENARIO_TITLES[scenario]} | {size:,} | {rps:.0f} | "
            f"{statistics.median(r['p50_ms'] for r in rows):.1f} | "
            f"{statistics.median(r['p99_ms'] for r in rows):.1f} | "
            f"{sum(r['errors'] for r in rows)} | {_fmt(rps / first if first else None)} |"
        )
    return [*lines, ""]


def flows_on_off_section(result: dict[str, Any], scenarios: list[str]) -> list[str]:
    """Requests/s and server CPU per request with the flow timeline on against off, as the
    median of the ratios of each round, with their quartiles."""
    names = {s["name"] for s in result["systems"]}
    pairs_ = [(name, f"{name}-noflows") for name in sorted(names) if f"{name}-noflows" in names]
    rows = []
    for mine, theirs in pairs_:
        for scenario in scenarios:
            rps = round_ratios(result["runs"], scenario, mine, theirs)
            cpu = round_ratios(result["runs"], scenario, mine, theirs, "cpu_ms_per_req")
            if len(rps) >= 2 and cpu:
                rows.append((mine, theirs, scenario, rps, cpu))
    if not rows:
        return []
    lines = [
        "## Flow timeline on / off, round by round",
        "",
        (
            "The two systems ran at the same time, sharing the server CPU: each round's ratio "
            "of CPU per request is the ratio of their costs in the same seconds (their "
            "requests/s also depend on how the scheduler shared the CPU between them). "
            if result.get("meta", {}).get("side_by_side")
            else "The two systems ran one after the other in each round. "
        )
        + "The ratio of each round, then the median over the rounds and its quartiles: less "
        "blurred than the ratio of the medians by what drifts over a run on a shared machine.",
        "",
        "| system | scenario | rounds | req/s on / off | quartiles | server CPU/req on / off |",
        "|---|---|---|---|---|---|",
    ]
    for mine, theirs, scenario, rps, cpu in rows:
        low, _, high = statistics.quantiles(rps, n=4) if len(rps) >= 4 else (min(rps), 0, max(rps))
        lines.append(
            f"| {mine} / {theirs} | {SCENARIO_TITLES[scenario]} | {len(rps)} | "
            f"{statistics.median(rps) - 1:+.1%} | {low - 1:+.1%} … {high - 1:+.1%} | "
            f"{statistics.median(cpu) - 1:+.1%} |"
        )
    return [*lines, ""]


def flow_writer_section(scenarios: list[str], systems: list[str], med: Medians) -> list[str]:
    """The flow timeline's background writer: its CPU per request and its share of the
    server's, both measured in the same run (``authgate_flow_writer_cpu_seconds_total``), a
    figure the noise between runs does not blur. The steps' recording in the requests
    themselves is not in it."""
    rows = [
        (scenario, system, m)
        for scenario in scenarios
        for system in systems
        if (m := med.get((scenario, system))) is not None
        and m.get("flow_writer_ms_per_req", -1) >= 0
        and m["cpu_ms_per_req"] > 0
    ]
    if not rows:
        return []
    lines = [
        "## Flow timeline: the writer's share",
        "",
        "CPU the flow writer's batches took per request, and its share of the server's CPU "
        "in the same runs (`authgate_flow_writer_cpu_seconds_total`); the recording of the "
        "steps in the requests is not in it.",
        "",
        "| scenario | system | writer CPU ms/req | share of server CPU |",
        "|---|---|---|---|",
    ]
    for scenario, system, m in rows:
        share = m["flow_writer_ms_per_req"] / m["cpu_ms_per_req"]
        lines.append(
            f"| {SCENARIO_TITLES[scenario]} | {system} | {m['flow_writer_ms_per_req']:.3f} "
            f"| {share:.1%} |"
        )
    return [*lines, ""]


def targets_section(result: dict[str, Any], med: Medians) -> list[str]:
    """The issue's targets, checked against this run."""
    if result.get("meta", {}).get("side_by_side"):
        # Each server had a share of the CPU: its latency and rate are not its own.
        return [
            "## Targets",
            "",
            "Not checked: the systems shared the server CPU (`--side-by-side`); the targets are "
            "for a server that has it to itself.",
            "",
        ]

    def ratio(scenario: str, mine: str, theirs: str) -> float | None:
        a, b = med.get((scenario, mine)), med.get((scenario, theirs))
        return a["rps"] / b["rps"] if a and b and b["rps"] else None

    checks: list[tuple[str, float | None, float]] = []
    scenarios = sorted({k[0] for k in med if k[0] != "interactive"})
    for scenario in scenarios:
        need = 1.5 if scenario in ("cc_jwt", "refresh") else 1.0
        checks.append(
            (
                f"authgate-sqlite / peer, {scenario}",
                ratio(scenario, "authgate-sqlite", "oidc-provider"),
                need,
            )
        )
        checks.append(
            (
                f"authgate-pg / peer, {scenario}",
                ratio(scenario, "authgate-pg", "oidc-provider"),
                0.7,
            )
        )
        if scenario in TOKEN_SCENARIOS or scenario in STATIC_SCENARIOS:
            need = 0.6 if scenario in TOKEN_SCENARIOS else 0.8
            checks.append(
                (
                    f"authgate-sqlite / floor, {scenario}",
                    ratio(scenario, "authgate-sqlite", "floor"),
                    need,
                )
            )
    lines = ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, goal in checks:
        if value is None:
            continue
        met = "yes" if value >= goal else "no"
        lines.append(f"| {name} | {value:.2f} | ≥ {goal} | {met} |")
    for (scenario, system), m in sorted(med.items()):
        if system.startswith("authgate") and scenario != "interactive":
            met = "yes" if m["p99_ms"] < 25 else "no"
            lines.append(f"| p99 {system}, {scenario} | {m['p99_ms']:.1f} ms | < 25 ms | {met} |")
    for system in {s for _, s in med}:
        if system.startswith("authgate"):
            peak = max(m["peak_rss_mb"] for (_, s), m in med.items() if s == system)
            met = "yes" if peak < 150 else "no"
            lines.append(f"| RSS per worker {system} | {peak:.0f} MB | < 150 MB | {met} |")
    return [*lines, ""]


def plot(result: dict[str, Any], path: Path) -> bool:
    """A bar chart of the ratios per scenario; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios, labels, rows = ratio_table(result)
    if not labels:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(scenarios) + 3), 5))
    width = 0.8 / len(labels)
    for i, (label, row) in enumerate(zip(labels, rows, strict=True)):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(scenarios))]
        ax.bar(xs, [v or 0 for v in row], width, label=label)
    for level, style in ((1.0, "-"), (0.7, "--"), (0.6, ":")):
        ax.axhline(level, color="grey", linewidth=0.8, linestyle=style)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([SCENARIO_TITLES[s] for s in scenarios], rotation=30, ha="right")
    ax.set_ylabel("requests/s ratio")
    ax.set_title(f"authgate / peer and authgate / floor, {result['meta']['date']}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def key_figures(result: dict[str, Any]) -> str:
    """One line for HISTORY.md: two pairs' ratios (against the peer first) on the token
    scenarios and introspection, or, without a reference system, each system's requests/s."""
    scenarios, labels, rows = ratio_table(result)
    shown = [i for i, s in enumerate(scenarios) if s in TOKEN_SCENARIOS or s == "introspect"]
    if labels:
        pairs_ = sorted(zip(labels, rows, strict=True), key=lambda p: "oidc-provider" not in p[0])
        return "; ".join(
            f"{label}: " + ", ".join(f"{scenarios[i]} {_fmt(row[i])}" for i in shown)
            for label, row in pairs_[:2]
        )
    med = medians(result["runs"])
    return "; ".join(
        f"{system['name']}: "
        + ", ".join(
            f"{scenario} {med[(scenario, system['name'])]['rps']:.0f}/s"
            for scenario in scenarios
            if (scenario, system["name"]) in med
        )
        for system in result["systems"]
    )


def write(result: dict[str, Any], out_dir: Path, stem: str) -> Path:
    """bench/results/<stem>.md, .png and .json (the raw runs), and the run's HISTORY.md row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    has_plot = plot(result, png)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    report = out_dir / f"{stem}.md"
    report.write_text(markdown(result, png.name if has_plot else None))
    meta = result["meta"]
    history.add_row(
        out_dir,
        date=meta["date"],
        commit=meta.get("commit", "unknown"),
        setup=stem,
        machine=f"{meta['cpus']} × {meta['cpu_model']}",
        figures=key_figures(result),
    )
    return report
