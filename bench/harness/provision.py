"""Provision an authgate database for the benchmark with authgate's own CLI, in one process.

Run with the AUTHGATE_* environment of the server to be; prints one JSON object: the user,
the client (id and secret) and the two resources. `python -m bench.harness.provision PASSWORD`.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

from authgate.cli.main import cli

REDIRECT_URI = "http://localhost:9876/callback"
RESOURCE_JWT = "https://api.bench.test/jwt"
RESOURCE_OPAQUE = "https://api.bench.test/opaque"
SCOPE = "read"
USERNAME = "bench"


def run(*args: str) -> Any:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main([*args, "--json"] if args[0] != "db" else list(args), standalone_mode=False)
    text = out.getvalue().strip()
    return json.loads(text) if text.startswith(("{", "[")) else text


def main() -> None:
    password = sys.argv[1]
    run("db", "upgrade")
    run("users", "create", "--username", USERNAME, "--password", password)
    app = run(
        "apps",
        "create",
        "--name",
        "Bench client",
        "--redirect-uri",
        REDIRECT_URI,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "client_credentials",
        "--scope",
        SCOPE,
    )
    secret = run("apps", "secrets", "create", app["id"])
    for identifier, fmt in ((RESOURCE_JWT, "jwt"), (RESOURCE_OPAQUE, "opaque")):
        run(
            "resources",
            "create",
            "--identifier",
            identifier,
            "--name",
            f"Bench API ({fmt})",
            "--scope",
            f"{SCOPE}=Read the bench API",
            "--format",
            fmt,
        )
        # client_credentials reaches only what an operator granted the app.
        run("apps", "access", "grant", app["id"], "--resource", identifier, "--scope", SCOPE)
    print(
        json.dumps(
            {
                "username": USERNAME,
                "client_id": app["id"],
                "client_secret": secret["client_secret_full"],
            }
        )
    )


if __name__ == "__main__":
    main()
