"""Server CPU time and memory from /proc (Linux): a process and all its descendants."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """The process and its descendants alive now."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU time of the process tree (reaped children included)."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name.
            total += sum(int(value) for value in fields[11:15])
    return total / TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(root: int) -> tuple[float, float]:
    """(largest peak RSS of one process, sum of the peaks) of the tree, in MB (VmHWM)."""
    peaks = [_status_kb(pid, "VmHWM") for pid in tree(root)]
    peaks = [kb for kb in peaks if kb > 0] or [0]
    return max(peaks) / 1024, sum(peaks) / 1024


def reset_peaks(root: int) -> bool:
    """Reset VmHWM of the tree (clear_refs 5), so the next reading is this scenario's peak."""
    ok = True
    for pid in tree(root):
        try:
            (PROC / str(pid) / "clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads have spent runnable but waiting for a CPU (schedstat): how
    much the machine (or the process's own threads) kept it from running."""
    total = 0
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9
