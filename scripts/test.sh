#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing (a virtualenv with the
# project and its test dependencies, Playwright among them; Debian's postgresql, chromium and
# npm), starts a throwaway PostgreSQL cluster on a loopback port, runs the checks and every test
# on SQLite and PostgreSQL (the browser tests in headless Chromium), and stops it.
# Usage: scripts/test.sh [pytest args…]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AUTHGATE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import authgate, pytest, authlib, importlinter, playwright" 2>/dev/null \
    || [ pyproject.toml -nt "$VENV/.installed" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".[test]"
    touch "$VENV/.installed"
fi

# The browser tests drive Debian's Chromium with Playwright; Playwright never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: /usr/bin/chromium is missing and this is not root: apt-get install chromium" >&2
        exit 1
    fi
    echo "test.sh: installing Debian's chromium for the browser tests" >&2
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
export AUTHGATE_REQUIRE_BROWSER=1

# The MCP conformance suite and the upstream OpenID Provider of the sign-in tests
# (node-oidc-provider) run on a Node release from npm (tests/conformance/package.json,
# tests/upstream/provider/package.json, installed there by the tests with `npm ci`); Debian's
# npm is only the installer.
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: npm is missing and this is not root: apt-get install npm" >&2
        exit 1
    fi
    echo "test.sh: installing Debian's npm for the MCP conformance suite" >&2
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y npm
fi
export AUTHGATE_REQUIRE_CONFORMANCE=1
export AUTHGATE_REQUIRE_UPSTREAM_PROVIDER=1

PGDIR="$(mktemp -d /tmp/authgate-pg.XXXXXX)"
PGPORT="${AUTHGATE_TEST_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
cleanup() { scripts/pg.sh stop "$PGDIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
AUTHGATE_TEST_POSTGRES_URL="$(scripts/pg.sh start "$PGDIR" "$PGPORT" | tail -n 1)"
export AUTHGATE_TEST_POSTGRES_URL AUTHGATE_REQUIRE_POSTGRES=1
echo "PostgreSQL test cluster: $AUTHGATE_TEST_POSTGRES_URL"

scripts/check

# Coverage of authgate's code in the test processes (the `authgate serve` processes some tests
# start are not measured), lines only ([tool.coverage.run] in pyproject.toml), into .coverage;
# pytest-cov combines the xdist workers' data. On Python 3.12+ coverage can use sys.monitoring,
# which costs less than the tracer 3.11 has.
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    export COVERAGE_CORE=sysmon
fi
"$VENV/bin/python" -m pytest -n 2 -p no:cacheprovider --cov=authgate --cov-report= "$@"
echo "authgate coverage: $("$VENV/bin/python" -m coverage report --format=total --precision=1) %"
# The floor for core, the protocol itself, just under what the whole suite measures: a change
# that leaves core less tested fails here. Only for the whole suite: a run of a few files
# measures less and says nothing about the floor.
CORE_FLOOR=93
if [ "$#" -eq 0 ]; then
    "$VENV/bin/python" -m coverage report --include='*/authgate/core/*' --skip-covered \
        --precision=1 --fail-under="$CORE_FLOOR" || {
        echo "test.sh: authgate.core coverage is below the floor of $CORE_FLOOR %" >&2
        exit 1
    }
fi
