"""The CLI prints an app list without loading the web framework (ARCHITECTURE.md, "The import
rule", contract 8): only ``authgate serve`` needs FastAPI, Starlette and uvicorn. Checked in a
fresh interpreter, on a real migrated SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WEB = ("fastapi", "starlette", "uvicorn")

PROBE = """
import json, sys
from click.testing import CliRunner
from authgate.cli.main import cli

runner = CliRunner()
steps = [
    ["db", "upgrade"],
    ["apps", "create", "--name", "Probe", "--redirect-uri", "https://probe.example/cb"],
    ["apps", "list", "--json"],
]
outputs = [runner.invoke(cli, step, catch_exceptions=False) for step in steps]
print(json.dumps({
    "exit_codes": [o.exit_code for o in outputs],
    "apps": json.loads(outputs[-1].stdout),
    "modules": sorted(sys.modules),
}))
"""


def _run(tmp_path: Path, probe: str) -> dict[str, object]:
    env = {
        "AUTHGATE_DATA_DIR": str(tmp_path / "data"),
        "AUTHGATE_ISSUER": "http://127.0.0.1:3000",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_apps_list_loads_no_web_framework(tmp_path: Path) -> None:
    result = _run(tmp_path, PROBE)
    assert result["exit_codes"] == [0, 0, 0]
    apps = result["apps"]
    assert isinstance(apps, list) and [a["name"] for a in apps] == ["Probe"]
    modules = result["modules"]
    assert isinstance(modules, list)
    assert [m for m in modules if m.split(".")[0] in WEB] == []
    assert "authgate.cli.serve" not in modules


def test_serve_still_loads_them(tmp_path: Path) -> None:
    """The probe can fail: asking for ``serve`` loads the web framework."""
    probe = PROBE.replace('["db", "upgrade"],', '["serve", "--help"], ["db", "upgrade"],')
    result = _run(tmp_path, probe)
    modules = result["modules"]
    assert isinstance(modules, list) and "fastapi" in modules
