"""Core's purity holds at run time too, not only in the import graph (ARCHITECTURE.md, "The
import rule"): importing every core module loads no web framework, database layer, template
engine or HTTP client. import-linter sees the imports a module names; this sees what a
package's ``__init__`` pulls in behind them (the resource-server kit's, for one)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import authgate.core

FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "jinja2", "alembic", "httpx", "httpcore")
OWN_ALLOWED = ("authgate.core", "authgate.crypto", "authgate.resource_server.canonical")

PROBE = """
import importlib, json, pkgutil, sys
import authgate.core
for info in pkgutil.walk_packages(authgate.core.__path__, "authgate.core."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_all_of_core_loads_no_framework() -> None:
    modules = pkgutil.walk_packages(authgate.core.__path__, "authgate.core.")
    assert len(list(modules)) > 30  # the probe below really walks core
    # A fresh interpreter: this one has loaded everything already.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = json.loads(out)
    assert [m for m in loaded if m.split(".")[0] in FORBIDDEN] == []
    authgate_modules = [m for m in loaded if m.startswith("authgate.")]
    foreign = [
        m
        for m in authgate_modules
        if not m.startswith(OWN_ALLOWED) and m != "authgate.resource_server"
    ]
    assert foreign == []
    assert "authgate.resource_server.canonical" in authgate_modules
