"""Where a report comes from and the one-line history of reports: each run writes its setup's
latest report (`bench/results/<setup>.md`, `.json`, …) over the previous one, which git keeps,
and adds a row to `bench/results/HISTORY.md` (date, commit, machine, key figures)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = [
    "# Benchmark history",
    "",
    "One row per run; the reports themselves are the latest per setup in this folder, and",
    "earlier ones are in git history (`git log -p bench/results/<setup>.md`). Figures are",
    "ratios measured within one run (machines here are shared and noisy).",
    "",
    "| date | commit | setup | machine | key figures |",
    "|---|---|---|---|---|",
]


def commit() -> str:
    """The commit measured: short hash, with ``+changes`` when the tree differed from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(  # noqa: S603 (a fixed git command)
            [git, "rev-parse", "--short=7", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 (a fixed git command)
            [git, "status", "--porcelain", "--untracked-files=no", "--", "src", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return head + ("+changes" if dirty else "")
    return "unknown"


def machine() -> str:
    """CPU count and model, from /proc/cpuinfo."""
    model, cpus = "unknown CPU", 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                cpus += 1
    return f"{cpus} × {model}"


def add_row(
    out_dir: Path, *, date: str, commit: str, setup: str, machine: str, figures: str
) -> Path:
    """Append one run's row to ``out_dir/HISTORY.md`` (created with its header if missing)."""
    path = out_dir / "HISTORY.md"
    lines = path.read_text().splitlines() if path.exists() else list(HEADER)
    lines.append(f"| {date} | {commit} | {setup} | {machine} | {figures} |")
    path.write_text("\n".join(lines) + "\n")
    return path
