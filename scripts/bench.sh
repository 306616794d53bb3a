#!/usr/bin/env bash
# The benchmark: authgate (SQLite, PostgreSQL) beside node-oidc-provider and the floor, on this
# machine, on loopback. Installs what is missing (the venv with the `bench` extra, Debian's wrk,
# the peer's npm packages), then runs bench/harness and writes bench/results/<date>.md and .png.
#
#   ./scripts/bench.sh                      the full run (see bench/README.md)
#   ./scripts/bench.sh --duration 5 --rounds 3 --growth-sizes 10000,100000
#   ./scripts/bench.sh --smoke              a seconds-long check that the harness works
#   ./scripts/bench.sh --help               every option
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AUTHGATE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
marker="$VENV/.installed-bench"
if ! "$VENV/bin/python" -c "import authgate, matplotlib, httpx" 2>/dev/null \
    || [ pyproject.toml -nt "$marker" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".[bench]"
    touch "$marker"
fi

smoke=0
for arg in "$@"; do
    [ "$arg" = "--smoke" ] && smoke=1
done

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$smoke" = 1 ]; then
        echo "bench.sh: wrk not installed; the smoke run uses the Python load generator" >&2
    elif [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null \
            || { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null; }
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
    fi
fi

peer=bench/peers/oidc-provider
if [ "$smoke" = 0 ] && { [ ! -d "$peer/node_modules/oidc-provider" ] \
    || [ "$peer/package.json" -nt "$peer/node_modules/.package-lock.json" ]; }; then
    command -v npm >/dev/null 2>&1 || { echo "bench.sh: npm is needed for the peer" >&2; exit 1; }
    # oidc-provider and a Node LTS release it supports (the `node` package) into node_modules.
    (cd "$peer" && npm install --no-audit --no-fund --loglevel=error)
fi

exec "$VENV/bin/python" -m bench.harness "$@"
