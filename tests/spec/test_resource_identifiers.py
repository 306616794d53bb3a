"""One table, run against the server's rule (core.resources) and the resource-server kit's
(resource_server.canonical): RFC 8707 §2 identifiers, and which spellings name one resource."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from authgate.core import resources
from authgate.core.errors import InvalidTargetError
from authgate.resource_server import canonical

CANONICAL = [
    pytest.param("https://mcp.example.com", "https://mcp.example.com", id="2-bare-origin"),
    pytest.param("https://mcp.example.com/", "https://mcp.example.com", id="2-lone-slash"),
    pytest.param("HTTPS://MCP.Example.COM:443/", "https://mcp.example.com", id="2-case-port"),
    pytest.param("http://h.example:80/a", "http://h.example/a", id="2-http-default-port"),
    pytest.param("https://h.example:8443/a", "https://h.example:8443/a", id="2-other-port"),
    pytest.param("https://h.example/mcp", "https://h.example/mcp", id="2-path"),
    pytest.param("https://h.example/mcp/", "https://h.example/mcp/", id="2-path-slash-kept"),
    pytest.param("https://h.example/MCP?x=1", "https://h.example/MCP?x=1", id="2-path-query"),
    pytest.param("https://[::1]:443/a", "https://[::1]/a", id="2-ipv6"),
]
INVALID = [
    pytest.param("mcp.example.com/mcp", id="2-relative"),
    pytest.param("https://h.example/a#frag", id="2-fragment"),
    pytest.param("ftp://h.example/a", id="2-scheme"),
    pytest.param("https://user@h.example/a", id="2-userinfo"),
    # An empty user information is still user information: refused on both sides, never read
    # as "https://h.example" (a parser that drops the "@" and one that does not would disagree
    # on the host).
    pytest.param("https://@h.example", id="2-empty-userinfo"),
    pytest.param("https://@h.example/mcp", id="2-empty-userinfo-path"),
    pytest.param("https://:@h.example/mcp", id="2-empty-user-and-password"),
    pytest.param("https://h.example/a b", id="2-space"),
    pytest.param("https://h.example:99999/", id="2-bad-port"),
    pytest.param("https://h.example/" + "a" * 2048, id="2-too-long"),
]
SAME = [
    pytest.param("https://h.example/mcp", "https://h.example/mcp/", True, id="slash-added"),
    pytest.param("https://h.example/mcp/", "https://h.example/mcp", True, id="slash-removed"),
    pytest.param("https://H.example:443/mcp/", "https://h.example/mcp", True, id="slash-case"),
    pytest.param("https://h.example/mcp?x=1", "https://h.example/mcp/?x=1", True, id="query"),
    pytest.param("https://h.example/", "https://h.example", True, id="origin"),
    pytest.param("https://h.example/mcp", "https://h.example/mcp//", False, id="two-slashes"),
    pytest.param("https://h.example/mcp", "https://h.example/mcpx", False, id="other-path"),
    pytest.param("https://h.example/mcp", "https://h.example", False, id="path-vs-origin"),
    pytest.param("https://h.example/mcp", "http://h.example/mcp", False, id="scheme"),
    pytest.param("https://h.example/mcp", "not a uri", False, id="invalid"),
]


def _server_canonical(value: str) -> str:
    try:
        return resources.canonical_resource(value)
    except InvalidTargetError as exc:
        raise ValueError(exc.description) from exc


CANONICALS: list[Callable[[str], str]] = [_server_canonical, canonical.canonical_resource]
SAMES: list[Callable[[str, str], bool]] = [resources.same_resource, canonical.same_resource]
SIDES = ["server", "kit"]


@pytest.mark.parametrize("rule", CANONICALS, ids=SIDES)
@pytest.mark.parametrize(("value", "expected"), CANONICAL)
def test_canonical_form(rule: Callable[[str], str], value: str, expected: str) -> None:
    assert rule(value) == expected


@pytest.mark.parametrize("rule", CANONICALS, ids=SIDES)
@pytest.mark.parametrize("value", INVALID)
def test_invalid_identifier(rule: Callable[[str], str], value: str) -> None:
    with pytest.raises(ValueError):  # InvalidResource is a ValueError
        rule(value)


@pytest.mark.parametrize("rule", SAMES, ids=SIDES)
@pytest.mark.parametrize(("a", "b", "same"), SAME)
def test_same_resource(rule: Callable[[str, str], bool], a: str, b: str, same: bool) -> None:
    assert rule(a, b) is same
    assert rule(b, a) is same
