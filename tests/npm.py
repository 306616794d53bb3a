"""Node packages the tests run (the MCP conformance suite, the upstream OpenID Provider):
``npm ci`` from a committed lock file, on a Node release from npm, into the test's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_ci(folder: Path, require_variable: str) -> None:
    """``npm ci`` in ``folder`` when its node_modules is missing or older than the lock. Without
    npm, or when it fails: the test fails if ``require_variable`` is "1" (scripts/test.sh sets
    it), else it is skipped."""
    lock = folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    node = folder / "node_modules" / ".bin" / "node"
    if node.exists() and installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is missing (Debian: apt-get install npm)", require_variable)
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        failed = f"npm ci failed in {folder.name}: {result.stderr.strip()[-2000:]}"
        _unavailable(failed, require_variable)


def _unavailable(reason: str, require_variable: str) -> None:
    if os.environ.get(require_variable) == "1":
        pytest.fail(f"{require_variable}=1 but {reason}")
    pytest.skip(reason)
