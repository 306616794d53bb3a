"""The README's "Protect an MCP server", run as written.

Its code blocks are read from README.md and run with bash in a directory that looks like a
clone to them (`scripts/`, `examples/` and `.venv`, the test's own environment, already
installed): `./scripts/develop.sh` serves authgate, the CLI registers the resource, the example
MCP server starts, the `curl` checks print what the README says they print, and then an MCP
client — the MCP SDK's, registering itself as a client does when pointed at the server — calls
`whoami` after the user signs in and allows. The only change to the commands: free loopback
ports instead of 3000 and 8765, as the servers of the other tests may run at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientMetadata

from tests.e2e.test_mcp_sdk import (
    ROOT,
    Authgate,
    Browser,
    MemoryStorage,
    Session,
    clean_env,
    free_port,
    wait_until,
    whoami,
)

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
SECTION = "## Protect an MCP server"
#: The addresses the README uses; the test moves them to free ports.
README_ISSUER_PORT, README_MCP = "localhost:3000", "127.0.0.1:8765"


def section(text: str, title: str) -> str:
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block: (language, body)."""
    return re.findall(r"(?ms)^```(\w*)\n(.*?)^```", text)


def commands(body: str) -> list[str]:
    """The commands of a bash block: comments and blank lines dropped, continuations joined."""
    joined = re.sub(r"\\\n\s*", "", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def test_the_section_is_what_this_test_runs() -> None:
    """The parsing below meets the README's shape, so a reworded section fails loudly here."""
    blocks = code_blocks(section(README.read_text(), SECTION))
    assert [lang for lang, _ in blocks] == ["bash", "bash", "text"]
    servers = commands(blocks[0][1])
    assert len(servers) == 3 and servers[0] == "./scripts/develop.sh", servers
    assert len(commands(blocks[1][1])) == 2
    assert commands("a \\\n  b\n# c\n\nd") == ["a b", "d"]


@dataclass
class Clone:
    """A directory where the README's relative paths resolve, and what runs there."""

    path: Path
    env: dict[str, str]
    ports: dict[str, str]
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def adapt(self, command: str) -> str:
        for old, new in self.ports.items():
            command = command.replace(old, new)
        return command

    def start(self, command: str, name: str) -> subprocess.Popen[bytes]:
        """A server command in the background, in a process group of its own."""
        with (
            (self.path / f"{name}.out").open("wb") as out,
            (self.path / f"{name}.err").open("wb") as err,
        ):
            proc = subprocess.Popen(
                ["bash", "-c", self.adapt(command)],
                cwd=self.path,
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def run(self, command: str) -> str:
        result = subprocess.run(
            ["bash", "-c", self.adapt(command)],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Clone]:
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.skip("the README's commands need bash and curl")
    for name in ("scripts", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    # The test's environment is the clone's .venv. develop.sh installs into it only when an
    # import fails or pyproject.toml (absent here) is newer than its last install.
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    as_port, mcp_port = free_port(), free_port()
    env = clean_env(AUTHGATE_ISSUER=f"http://localhost:{as_port}", AUTHGATE_PORT=str(as_port))
    ports = {README_ISSUER_PORT: f"localhost:{as_port}", README_MCP: f"127.0.0.1:{mcp_port}"}
    made = Clone(tmp_path, env, ports)
    try:
        yield made
    finally:
        made.stop_all()


def test_protect_an_mcp_server_as_written(clone: Clone) -> None:
    text = section(README.read_text(), SECTION)
    blocks = code_blocks(text)
    develop, register, mcp_server = commands(blocks[0][1])
    checks, expected = commands(blocks[1][1]), blocks[2][1]
    issuer = clone.env["AUTHGATE_ISSUER"]
    mcp_url = clone.adapt(f"http://{README_MCP}/mcp")

    # The example names authgate as develop.sh makes it name itself (here on another port).
    script = (ROOT / "scripts" / "develop.sh").read_text()
    assert 'AUTHGATE_ISSUER="${AUTHGATE_ISSUER:-http://localhost:3000}"' in script
    assert 'AUTHGATE_PORT="${AUTHGATE_PORT:-3000}"' in script
    assert f"AUTHGATE_ISSUER=http://{README_ISSUER_PORT} " in mcp_server

    # 1. authgate.
    authgate = clone.start(develop, "authgate")
    wait_until(lambda: httpx.get(f"{issuer}/healthz").status_code == 200, authgate, "develop.sh")
    printed = (clone.path / "authgate.out").read_text()
    password = re.search(r"Admin password:\s+(\S+)", printed)
    api_token = re.search(r"API token:\s+(agpat_\S+)", printed)
    assert password is not None and api_token is not None, printed
    me = httpx.get(
        f"{issuer}/api/v2/users/me", headers={"Authorization": f"Bearer {api_token.group(1)}"}
    )
    assert me.status_code == 200, me.text

    # 2. the resource, in authgate's database (./data, as develop.sh uses it).
    out = clone.run(register)
    assert "Registered resource." in out and mcp_url in out, out
    resource = httpx.get(
        f"{issuer}/api/v2/resources/{quote(mcp_url, safe='')}",
        headers={"Authorization": f"Bearer {api_token.group(1)}"},
    )
    assert resource.status_code == 200, resource.text
    assert [s["name"] for s in resource.json()["scopes"]] == ["mcp:tools"]

    # 3. the MCP server.
    server = clone.start(mcp_server, "mcp")
    prm = clone.adapt(f"http://{README_MCP}/.well-known/oauth-protected-resource/mcp")
    wait_until(lambda: httpx.get(prm).status_code == 200, server, "the example MCP server")

    # What the README says the checks print.
    printed_lines = "".join(clone.run(check) for check in checks).replace("\r", "").splitlines()
    assert printed_lines == clone.adapt(expected).splitlines()

    # Any MCP client: the SDK's, registering itself, with the user signing in and allowing.
    user = Authgate(
        issuer,
        clone.env,
        {"username": "admin", "password": password.group(1)},
        me.json()["id"],
        clone.path / "authgate.err",
    )
    whoami_result, client_id, statuses = asyncio.run(connect(mcp_url, user))
    assert whoami_result == {
        "subject": me.json()["id"],
        "client_id": client_id,
        "scopes": ["mcp:tools"],
        "resource": mcp_url,
    }
    assert ("POST", f"{issuer}/oauth2/register", 201) in statuses  # it registered itself
    assert ("POST", mcp_url, 401) == statuses[0]  # and found authgate from the 401


async def connect(url: str, authgate: Authgate) -> tuple[dict[str, Any], str, list[Any]]:
    redirect_uri = f"http://localhost:{free_port()}/callback"
    metadata = OAuthClientMetadata(
        client_name="README MCP client",
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    storage = MemoryStorage(None)  # no client yet: it registers itself (RFC 7591)
    browser = Browser(authgate)
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    session = Session(provider, storage, browser)
    try:
        answer = await session.connect(url, whoami)
    finally:
        await browser.http.aclose()
    assert storage.client_info is not None and storage.client_info.client_id is not None
    return answer, storage.client_info.client_id, session.statuses
