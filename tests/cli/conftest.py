"""CLI fixtures: a temporary data directory as the whole configuration, and a runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from authgate import storage
from authgate.cli.main import cli
from authgate.config import Settings
from authgate.storage import SqlStore

ISSUER = "http://auth.test"


@dataclass(frozen=True)
class Cli:
    """Runs ``authgate …`` in-process with the test environment."""

    data_dir: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir.resolve() / 'authgate.db'}"

    def settings(self) -> Settings:
        """The settings the CLI sees (passed as a mapping: mypy has no pydantic plugin here)."""
        values: dict[str, Any] = {"data_dir": self.data_dir, "issuer": ISSUER}
        return Settings(**values)

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", input=input).stdout)

    def fails(self, *args: str, input: str | None = None, code: int = 1) -> Result:
        result = self.run(*args, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr)
        assert result.stderr.strip(), "an error must say what went wrong"
        return result


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Only the data directory and the issuer are configured; nothing else leaks in."""
    for name in ("SECRET_KEY", "DATABASE_URL", "HOST", "PORT"):
        monkeypatch.delenv(f"AUTHGATE_{name}", raising=False)
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTHGATE_ISSUER", ISSUER)
    return Cli(tmp_path / "data")


@pytest.fixture
def migrated(env: Cli) -> Cli:
    env.ok("db", "upgrade")
    return env


@pytest.fixture
def store(migrated: Cli) -> Iterator[SqlStore]:
    opened = storage.open_store(migrated.database_url)
    yield opened
    opened.close()
