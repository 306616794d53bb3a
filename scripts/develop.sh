#!/usr/bin/env bash
# Runs authgate for development on a fresh machine: installs what is missing (the project and the
# MCP SDK that the example MCP server in examples/mcp_server/ needs), migrates the SQLite
# database in ./data, bootstraps an admin, an API token and a demo app on first start (printing
# them once), and serves on http://localhost:3000.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AUTHGATE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# scripts/test.sh installs a superset (.installed); either marker means "up to date".
marker="$VENV/.installed-run"
[ -f "$VENV/.installed" ] && [ "$VENV/.installed" -nt "$marker" ] && marker="$VENV/.installed"
if ! "$VENV/bin/python" -c "import authgate, fastapi, uvicorn, mcp" 2>/dev/null \
    || [ pyproject.toml -nt "$marker" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".[mcp]"
    touch "$VENV/.installed-run"
fi

export AUTHGATE_ISSUER="${AUTHGATE_ISSUER:-http://localhost:3000}"
export AUTHGATE_DATA_DIR="${AUTHGATE_DATA_DIR:-./data}"
export AUTHGATE_PORT="${AUTHGATE_PORT:-3000}"
exec "$VENV/bin/authgate" serve --dev "$@"
