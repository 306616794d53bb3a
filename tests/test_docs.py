"""The docs stay true: the configuration reference is generated from the settings, every option
has a description, and every module, test and path the docs name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authgate.config import Settings, settings_markdown
from authgate.core import flow_reasons

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_settings() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == settings_markdown(), (
        "docs/configuration.md is stale: run `authgate settings --markdown > docs/configuration.md`"
    )


def test_flow_reasons_table_is_generated_from_the_code() -> None:
    current = (ROOT / "docs" / "flow-reasons.md").read_text()
    assert current == flow_reasons.markdown(), (
        "docs/flow-reasons.md is stale: run "
        "`authgate flows reasons --markdown > docs/flow-reasons.md`"
    )


def test_every_reason_code_is_documented_once() -> None:
    codes = [reason.code for reason in flow_reasons.REASONS]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z_]{3,48}", code) for code in codes)
    # Every code the classification gives is in the table.
    assert {code for _, _, code in flow_reasons._RULES} <= set(codes)
    assert all(reason.explanation.endswith(".") for reason in flow_reasons.REASONS)


def test_every_option_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"AUTHGATE_{name.upper()} has no description"
        assert f"`AUTHGATE_{name.upper()}`" in settings_markdown()


#: The documents that name modules, tests and paths of the repository.
NAMING_DOCS = ["ARCHITECTURE.md", "docs/specs.md", "docs/decisions.md"]
#: Where a name in backticks may be relative to: the repository, the package, one of its
#: folders (a doc's section about `web/` names `protocol/`), the tests.
PACKAGE = ROOT / "src" / "authgate"
BASES = [ROOT, PACKAGE, *(p for p in PACKAGE.iterdir() if p.is_dir()), ROOT / "tests"]
#: A backticked path: segments of a file or folder name, ending in a file with an extension
#: or in a folder's slash (`core/pkce.py`, `tests/e2e/`, `cli/`).
PATH = re.compile(r"`((?:[\w.-]+/)+(?:[\w.-]+\.(?:py|md|sh|json|toml|yml|yaml|txt))?)`")


#: A bare module or script name in backticks (`accounts.py`): it must exist somewhere.
FILE = re.compile(r"`([\w-]+\.(?:py|sh))`")


def _named_paths(text: str) -> list[str]:
    return [m for m in PATH.findall(text) if "…" not in m and not m.startswith(("/", "http"))]


def _exists(name: str) -> bool:
    if "/" in name:
        return any((base / name).exists() for base in BASES)
    return (
        any(ROOT.glob(f"src/**/{name}"))
        or any(ROOT.glob(f"tests/**/{name}"))
        or any(ROOT.glob(f"scripts/{name}"))
    )


@pytest.mark.parametrize("doc", NAMING_DOCS)
def test_every_path_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text()
    named = _named_paths(text) + FILE.findall(text)
    assert named, f"{doc} names no path: the pattern is broken"
    missing = [p for p in named if not _exists(p)]
    assert not missing, f"{doc} names paths that do not exist: {missing}"


def test_the_path_check_can_fail() -> None:
    assert _named_paths("see `core/no_such_module.py` and `cli/`") == [
        "core/no_such_module.py",
        "cli/",
    ]
    assert not _exists("core/no_such_module.py")
    assert FILE.findall("`nowhere.py`") == ["nowhere.py"] and not _exists("nowhere.py")
    assert _exists("core/pkce.py") and _exists("pkce.py") and _exists("cli/")


def test_docs_never_point_outside_the_repository() -> None:
    for doc in [*NAMING_DOCS, "README.md", "CONTRIBUTING.md", "SECURITY.md"]:
        text = (ROOT / doc).read_text()
        assert "DESIGN.md" not in text and "../shared" not in text, doc
