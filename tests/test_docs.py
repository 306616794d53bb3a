"""The docs stay true: the configuration reference is generated from the settings, every option
has a description, and every module, test and path the docs name exists."""

from __future__ import annotations

import re
import sys
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


def _first_bash_block(text: str) -> list[str]:
    block = re.search(r"(?ms)^```bash\n(.*?)^```", text)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines()]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _first_bash_block(readme) == ["./scripts/develop.sh", "./scripts/test.sh"]
    run = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line[:1] != "#"]
    assert "exec ./scripts/test.sh" in run, "CI must run the README's test command unchanged"
    # A newcomer learns what authgate is before meeting the project it came from.
    intro = readme.split("\n## ", 1)[0]
    assert "Coder" not in intro and "MCP" in intro


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` pull in, transitively (as installed here)."""
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen or name == "authgate":
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [n for r in requires if "extra ==" not in r for n in _requirement_names([r])]
    return seen


def test_develop_sh_installs_what_the_example_mcp_server_imports() -> None:
    """The README's run command must be enough for its "Protect an MCP server" (which once
    needed the `mcp` package that nothing installed)."""
    import ast
    import tomllib
    from importlib import metadata

    script = (ROOT / "scripts" / "develop.sh").read_text()
    extras = re.search(r'pip" install --quiet -e "\.\[([\w,]+)\]"', script)
    assert extras is not None, "develop.sh installs the project with the extras the example needs"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras.group(1).split(","):
        wanted += project["optional-dependencies"][extra]
    installed = _closure(_requirement_names(wanted))

    tree = ast.parse((ROOT / "examples" / "mcp_server" / "server.py").read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}  # fmt: skip
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
    third_party = modules - set(sys.stdlib_module_names) - {"authgate", "__future__"}
    providers = metadata.packages_distributions()
    assert third_party >= {"mcp", "uvicorn", "starlette"}, third_party
    for module in third_party:
        dists = {d.lower().replace("_", "-") for d in providers[module]}
        assert dists & installed, f"develop.sh does not install {module} ({dists})"
    probe = re.search(r'python" -c "import ([\w, ]+)"', script)
    assert probe is not None and "mcp" in probe.group(1).split(", ")


def _anchor(heading: str) -> str:
    """A heading's anchor as Markdown renderers make it: lower case, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve_and_reach_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links, "the link pattern is broken"
    anchors = {_anchor(h) for h in re.findall(r"(?m)^#{2,4} (.+)$", readme)}
    for link in links:
        assert not link.startswith(("http:", "https:", "/", "..")), f"points outside: {link}"
        path, _, fragment = link.partition("#")
        if path:
            assert (ROOT / path).exists(), f"README links to a missing file: {link}"
        else:
            assert fragment in anchors, f"README links to a missing section: {link}"
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    assert "`/api/v2/docs`" in readme  # the browsable API reference


def test_the_anchor_check_can_fail() -> None:
    assert _anchor('Known clients, and "Test this client"') == "known-clients-and-test-this-client"
    assert _anchor("The whole flow by hand") == "the-whole-flow-by-hand"
