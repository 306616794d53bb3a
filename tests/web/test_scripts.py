"""The scripts in scripts/oauth2/ against a real ``authgate serve --dev`` process.

These are the scripts a newcomer runs first (README), so they are tested the way a newcomer
runs them: a fresh data directory, the server on a free port, the bootstrap credentials read
from what ``serve --dev --json`` prints (or, should that output change, made with the CLI).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.flows import callback_params, decide, login

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "oauth2"
REDIRECT_URI = "http://localhost:9876/callback"
RESOURCE = "https://api.example.com"  # the resource test-mcp-oauth2.sh registers
RESOURCE_PATH = "/api/v2/resources/https%3A%2F%2Fapi.example.com"
# Variables a developer may have exported that must not leak into the server or the scripts.
INHERITED = (
    "AUTHGATE_",
    "BASE_URL",
    "SESSION_TOKEN",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CALLBACK_PORT",
    "CODE_VERIFIER",
    "CODE_CHALLENGE",
    "REDIRECT_URI",
    "APP_NAME",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def authgate_command() -> str:
    """The ``authgate`` entry point of the interpreter running the tests (the venv's)."""
    local = Path(sys.executable).parent / "authgate"
    found = str(local) if local.exists() else shutil.which("authgate")
    if found is None:
        pytest.fail("the authgate command is not installed: run scripts/test.sh")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED)}
    env.update(PYTHONUNBUFFERED="1", NO_BROWSER="1", **extra)
    return env


@dataclass(frozen=True)
class Server:
    url: str
    username: str
    password: str
    token: str
    env: dict[str, str]

    def script_env(self, **extra: str) -> dict[str, str]:
        return {
            **self.env,
            "AUTHGATE_URL": self.url,
            "AUTHGATE_TOKEN": self.token,
            "AUTHGATE_USERNAME": self.username,
            "AUTHGATE_PASSWORD": self.password,
            "AUTHGATE_REFRESH_REUSE_GRACE_SECONDS": "0",
            **extra,
        }

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"})


def bootstrap_credentials(stdout: str) -> tuple[str, str, str] | None:
    """(username, password, api_token) from ``serve --dev --json`` output, or its text form."""
    start = stdout.find("{")
    if start >= 0:
        try:
            data, _ = json.JSONDecoder().raw_decode(stdout[start:])
        except ValueError:
            data = None
        if isinstance(data, dict) and {"username", "password", "api_token"} <= data.keys():
            return str(data["username"]), str(data["password"]), str(data["api_token"])
    found = [
        re.search(rf"^{label}:\s+(\S+)\s*$", stdout, re.MULTILINE)
        for label in ("Admin user", "Admin password", "API token")
    ]
    if all(found):
        user, password, token = (m.group(1) for m in found if m)
        return user, password, token
    return None


def cli_credentials(env: dict[str, str]) -> tuple[str, str, str]:
    """An admin and an API token made with the CLI, against the server's data directory."""
    username, password = "scripts-admin", "scripts-password-" + os.urandom(8).hex()
    authgate = authgate_command()
    subprocess.run(
        [authgate, "users", "create", "--username", username, "--admin", "--password-stdin",
         "--json"],
        input=password + "\n", env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    made = subprocess.run(
        [authgate, "tokens", "create", "--user", username, "--name", "scripts", "--json"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    token = json.loads(made.stdout)
    value = token["token"]
    assert isinstance(value, str) and value.startswith("agpat_"), made.stdout
    return username, password, value


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"authgate serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"authgate serve did not answer /healthz within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the OAuth scripts need bash and curl")
    data_dir = tmp_path_factory.mktemp("authgate-scripts")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        AUTHGATE_DATA_DIR=str(data_dir),
        AUTHGATE_PORT=str(port),
        AUTHGATE_HOST="127.0.0.1",
        AUTHGATE_ISSUER=url,
        # Strict refresh-token reuse, so the reuse check needs no waiting.
        AUTHGATE_REFRESH_REUSE_GRACE_SECONDS="0",
        # Every script here signs the same admin in, often within one minute: more than the
        # default slow-down allows (5 a minute per account). tests/web/test_rate_limits.py and
        # the multi-node suite test the limits themselves.
        AUTHGATE_SIGN_IN_ATTEMPTS_PER_USER="100",
        AUTHGATE_SIGN_IN_RATE_PER_IP="200",
    )
    out_path, err_path = data_dir / "serve.out", data_dir / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [authgate_command(), "serve", "--dev", "--json"],
            stdout=out, stderr=err, env=env, cwd=data_dir,
        )  # fmt: skip
    try:
        wait_healthy(url, process, err_path)
        creds = bootstrap_credentials(out_path.read_text()) or cli_credentials(env)
        username, password, token = creds
        me = httpx.get(f"{url}/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == username
        yield Server(url, username, password, token, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=env, capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip


def exports(stdout: str) -> dict[str, str]:
    """The ``export NAME=value`` lines a script prints for ``eval``; nothing else allowed."""
    values = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "export" and "=" in words[1], stdout
        name, _, value = words[1].partition("=")
        values[name] = value
    return values


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def leftover_test_apps(server: Server) -> list[str]:
    with server.api() as api:
        apps = api.get("/api/v2/oauth2-provider/apps")
    assert apps.status_code == 200, apps.text
    return [app["name"] for app in apps.json() if app["name"].startswith("test-mcp-")]


def registered_resource(server: Server) -> dict[str, object] | None:
    with server.api() as api:
        found = api.get(RESOURCE_PATH)
    assert found.status_code in (200, 404), found.text
    return found.json() if found.status_code == 200 else None


def script_steps(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The `✓` lines of a passing run of test-mcp-oauth2.sh, checked against its summary."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    summary = re.fullmatch(r"(\d+) passed, 0 failed", lines[-1])
    assert summary is not None, result.stdout
    steps = [line for line in lines if line.startswith("✓ ")]
    assert len(steps) == int(summary.group(1)) >= 15
    return steps


# --- generate-pkce.sh -------------------------------------------------------------------------


def test_generate_pkce_prints_a_verifier_and_its_s256_challenge() -> None:
    first = run("generate-pkce.sh", clean_env())
    second = run("generate-pkce.sh", clean_env())
    assert first.returncode == 0, first.stderr
    pair = exports(first.stdout)
    verifier, challenge = pair["CODE_VERIFIER"], pair["CODE_CHALLENGE"]
    # RFC 7636 §4.1: base64url of 32 octets is 43 characters of the unreserved set.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", verifier)
    assert challenge == s256(verifier)
    assert exports(second.stdout)["CODE_VERIFIER"] != verifier
    assert "code_challenge_method=S256" in first.stderr  # the usage snippets


def test_generate_pkce_sourced_exports_both() -> None:
    probe = (
        f"source {shlex.quote(str(SCRIPTS / 'generate-pkce.sh'))} 2>/dev/null; "
        'echo "$-"; printenv CODE_VERIFIER; printenv CODE_CHALLENGE'
    )
    result = subprocess.run(
        ["bash", "-c", probe], env=clean_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    options, verifier, challenge = result.stdout.split()
    assert "e" not in options and "u" not in options  # the caller's shell options are kept
    assert challenge == s256(verifier)


# --- setup-test-app.sh and cleanup-test-app.sh ------------------------------------------------


def test_setup_creates_an_app_and_cleanup_deletes_it(server: Server) -> None:
    setup = run("setup-test-app.sh", server.script_env())
    assert setup.returncode == 0, setup.stderr
    made = exports(setup.stdout)
    client_id, secret = made["CLIENT_ID"], made["CLIENT_SECRET"]
    assert secret.startswith("agcs_")
    assert made["AUTHGATE_URL"] == server.url
    with server.api() as api:
        app = api.get(f"/api/v2/oauth2-provider/apps/{client_id}")
        assert app.status_code == 200, app.text
        assert app.json()["redirect_uris"] == [REDIRECT_URI]
        assert app.json()["name"] == made["APP_NAME"]

        cleanup = run("cleanup-test-app.sh", server.script_env(), client_id)
        assert cleanup.returncode == 0, cleanup.stderr
        assert api.get(f"/api/v2/oauth2-provider/apps/{client_id}").status_code == 404

    again = run("cleanup-test-app.sh", server.script_env(CLIENT_ID=client_id))
    assert again.returncode == 1
    assert "answered 404, expected 204" in again.stderr
    assert "No such app" in again.stderr  # the server's error body is shown


def test_setup_without_a_token_says_what_is_missing(server: Server) -> None:
    result = run("setup-test-app.sh", clean_env(AUTHGATE_URL=server.url))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "AUTHGATE_TOKEN is not set" in result.stderr


# --- test-mcp-oauth2.sh -----------------------------------------------------------------------


@pytest.mark.parametrize("json_tool", ["jq", "python3"])
def test_mcp_oauth2_script_passes(server: Server, json_tool: str) -> None:
    if shutil.which(json_tool) is None:
        pytest.skip(f"{json_tool} is not installed")
    assert registered_resource(server) is None
    result = run("test-mcp-oauth2.sh", server.script_env(AUTHGATE_JSON_TOOL=json_tool))
    steps = script_steps(result)
    for expected in (
        "metadata (RFC 8414)",
        "invalid_grant",
        "invalid_target",
        "refresh",
        f"register the resource {RESOURCE} (POST /api/v2/resources): registered",
        f"a JWT access token for {RESOURCE}",
        "is in ",  # the JWT's kid in the JWKS
        f"token introspection (RFC 7662): active, aud {RESOURCE}",
        "revoke the refresh token (RFC 7009)",
        f"delete the resource {RESOURCE}",
    ):
        assert any(expected in step for step in steps), (expected, steps)
    assert leftover_test_apps(server) == []  # its app was deleted
    assert registered_resource(server) is None  # and the resource it registered


def test_mcp_oauth2_script_reuses_a_registered_resource_and_leaves_it(server: Server) -> None:
    with server.api() as api:
        made = api.post(
            "/api/v2/resources",
            json={"identifier": RESOURCE + "/", "name": "Registered before", "scopes": []},
        )
        assert made.status_code == 201, made.text
        try:
            result = run("test-mcp-oauth2.sh", server.script_env())
            steps = script_steps(result)
            assert any("already registered: used as it is" in step for step in steps), steps
            assert not any("delete the resource" in step for step in steps), steps
            assert registered_resource(server) == made.json()  # untouched
        finally:
            api.delete(f"/api/v2/resources/{made.json()['id']}")
    assert leftover_test_apps(server) == []


def test_mcp_oauth2_script_names_the_failed_step_and_cleans_up(server: Server) -> None:
    result = run("test-mcp-oauth2.sh", server.script_env(AUTHGATE_PASSWORD="not-the-password"))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].endswith("passed, 1 failed")
    assert f"✗ sign in as {server.username}" in result.stderr
    assert "Incorrect username or password" in result.stderr
    assert leftover_test_apps(server) == []  # the trap deleted the app it had made


def test_mcp_oauth2_script_interrupted_deletes_the_resource_it_registered(
    server: Server,
) -> None:
    # A grace period makes the script wait at the reuse step, after the resource steps:
    # interrupt it there, as Ctrl-C would (the whole process group).
    env = server.script_env(AUTHGATE_REFRESH_REUSE_GRACE_SECONDS="30")
    script = subprocess.Popen(
        ["bash", str(SCRIPTS / "test-mcp-oauth2.sh")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    assert script.stdout is not None and script.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=read_lines, args=(script.stdout, lines), daemon=True)
    reader.start()
    try:
        wait_for_line(lines, r"^✓ register the resource .*: registered", seen)
        assert registered_resource(server) is not None
        wait_for_line(lines, r"waiting \d+s for the refresh reuse grace period", seen)
        os.killpg(script.pid, signal.SIGTERM)
        assert script.wait(timeout=30) == 1
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait(timeout=15)
        reader.join(timeout=5)
    err = script.stderr.read()
    script.stdout.close()
    script.stderr.close()
    assert "interrupted" in err, err
    assert registered_resource(server) is None
    assert leftover_test_apps(server) == []


# --- test-manual-flow.sh and callback_server.py -----------------------------------------------


def read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def wait_for_line(lines: queue.Queue[str], pattern: str, seen: list[str]) -> re.Match[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    pytest.fail(f"no line matching {pattern!r} in:\n" + "".join(seen))


@pytest.fixture
def made_app(server: Server) -> Iterator[dict[str, str]]:
    setup = run("setup-test-app.sh", server.script_env())
    assert setup.returncode == 0, setup.stderr
    made = exports(setup.stdout)
    yield made
    with server.api() as api:
        api.delete(f"/api/v2/oauth2-provider/apps/{made['CLIENT_ID']}")


def test_manual_flow_catches_the_callback_and_prints_tokens(
    server: Server, made_app: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = server.script_env(
        CLIENT_ID=made_app["CLIENT_ID"],
        CLIENT_SECRET=made_app["CLIENT_SECRET"],
        CALLBACK_PORT=str(port),
        CALLBACK_TIMEOUT="60",
    )
    stdout_path = tmp_path / "tokens.json"
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with stdout_path.open("w") as stdout:
        flow = subprocess.Popen(
            ["bash", str(SCRIPTS / "test-manual-flow.sh")],
            stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
    assert flow.stderr is not None
    reader = threading.Thread(target=read_lines, args=(flow.stderr, lines), daemon=True)
    reader.start()
    try:
        url = wait_for_line(lines, r"(http://\S+/oauth2/authorize\?\S+)", seen).group(1)
        assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{port}%2Fcallback" in url
        # The browser: sign in, Allow, follow the redirect to the listener.
        with httpx.Client(base_url=server.url) as browser:
            login(browser, server.username, server.password)
            allowed = decide(browser, url)
            params = callback_params(allowed)
            assert params["iss"] == server.url
            location = allowed.headers["location"]
            assert location.startswith(f"http://localhost:{port}/callback?")
            page = httpx.get(location, timeout=30)
        assert page.status_code == 200, page.text
        assert "Tokens received" in page.text
        assert flow.wait(timeout=30) == 0, "".join(seen)
    finally:
        if flow.poll() is None:
            flow.terminate()
            flow.wait(timeout=15)
        reader.join(timeout=5)
        flow.stderr.close()
    seen.extend(iter_queue(lines))
    tokens = json.loads(stdout_path.read_text())
    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"].startswith("agat_")
    assert tokens["refresh_token"].startswith("agrt_")
    err = "".join(seen)
    assert f"curl -H 'Authorization: Bearer {tokens['access_token']}'" in err
    assert f"{server.url}/api/v2/users/me" in err
    me = httpx.get(
        f"{server.url}/api/v2/users/me",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert me.status_code == 200 and me.json()["username"] == server.username


def iter_queue(lines: queue.Queue[str]) -> list[str]:
    out = []
    while not lines.empty():
        out.append(lines.get_nowait())
    return out


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        pytest.param("state=s1&error=access_denied&error_description=denied", 400,
                     "access_denied: denied", id="error-shown"),
        pytest.param("code=agac_x&state=other", 400, "State mismatch", id="state-mismatch"),
        pytest.param("state=s1", 400, "Missing code", id="missing-code"),
    ],
)  # fmt: skip
def test_callback_server_rejects_bad_callbacks(query: str, status: int, message: str) -> None:
    port = free_port()
    env = clean_env(CLIENT_ID="client", CLIENT_SECRET="secret", CODE_VERIFIER="v" * 43)
    listener = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "callback_server.py"), "--port", str(port),
         # Nothing listens on port 9: a token request would fail loudly.
         "--token-url", "http://127.0.0.1:9/oauth2/tokens", "--state", "s1", "--timeout", "30"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/callback?{query}", timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the callback listener did not start"
                time.sleep(0.05)
        out, err = listener.communicate(timeout=15)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate(timeout=15)
    assert response.status_code == status
    assert message in response.text
    assert listener.returncode == 1
    assert message in err
    assert out == ""  # no tokens
