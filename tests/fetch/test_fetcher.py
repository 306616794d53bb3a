"""The SSRF-safe fetcher against a real HTTPS server on 127.0.0.1: address rules (each class of
non-public address refused before any connection), IP pinning, redirects, size cap, deadline,
content type and caching headers."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authgate.core.ports import FetchError
from authgate.fetch import AllowList, HttpsFetcher, is_public
from authgate.fetch.fetcher import max_age
from tests.fetch.server import DocumentServer, Route, serve

DOC = {"client_id": "x"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DocumentServer]:
    yield from serve(tmp_path)


def fetcher(tmp_path: Path, **kwargs: Any) -> HttpsFetcher:
    kwargs.setdefault("allow", AllowList.parse(["127.0.0.1"]))
    return HttpsFetcher(ca_bundle=str(tmp_path / "ca.pem"), **kwargs)


def resolver(*answers: str, calls: list[str] | None = None) -> Any:
    """A getaddrinfo stand-in: every name resolves to ``answers``."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        family = socket.AF_INET6 if ":" in answers[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    return resolve


REFUSED = [
    pytest.param("127.0.0.1", id="ipv4-loopback"),
    pytest.param("127.8.9.10", id="ipv4-loopback-range"),
    pytest.param("10.1.2.3", id="rfc1918-10"),
    pytest.param("172.16.5.4", id="rfc1918-172"),
    pytest.param("192.168.0.10", id="rfc1918-192"),
    pytest.param("169.254.169.254", id="link-local-cloud-metadata"),
    pytest.param("100.64.0.1", id="cgnat-rfc6598"),
    pytest.param("100.127.255.254", id="cgnat-upper"),
    pytest.param("0.0.0.0", id="unspecified-v4"),  # noqa: S104 - an address to refuse
    pytest.param("0.1.2.3", id="this-network"),
    pytest.param("224.0.0.1", id="multicast-v4"),
    pytest.param("240.0.0.1", id="reserved-class-e"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("192.0.0.8", id="ietf-protocol-assignments"),
    pytest.param("192.0.2.1", id="documentation-test-net"),
    pytest.param("198.18.0.1", id="benchmarking"),
    pytest.param("::1", id="ipv6-loopback"),
    pytest.param("::", id="unspecified-v6"),
    pytest.param("fe80::1", id="ipv6-link-local"),
    pytest.param("fc00::1", id="ipv6-unique-local"),
    pytest.param("fd12:3456::1", id="ipv6-unique-local-fd"),
    pytest.param("fec0::1", id="ipv6-site-local"),
    pytest.param("ff02::1", id="ipv6-multicast"),
    pytest.param("::ffff:127.0.0.1", id="ipv4-mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", id="ipv4-mapped-private"),
    pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-metadata"),
    pytest.param("2002:7f00:1::1", id="6to4-loopback"),
    pytest.param("2002:a00:1::1", id="6to4-private"),
    pytest.param("64:ff9b::a00:1", id="nat64-private"),
    pytest.param("64:ff9b:1::1", id="nat64-local-use"),
    pytest.param("2001::1", id="teredo"),
    pytest.param("2001:db8::1", id="ipv6-documentation"),
    pytest.param("::127.0.0.1", id="ipv4-compatible"),
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_address_is_refused_before_connecting(
    tmp_path: Path, server: DocumentServer, address: str
) -> None:
    assert not is_public(ipaddress.ip_address(address))
    server.routes["/doc.json"] = Route.json(DOC)
    calls: list[str] = []
    # No allow-list: even the test server's own 127.0.0.1 is not reachable.
    f = fetcher(tmp_path, allow=AllowList(), resolve=resolver(address, calls=calls))
    with pytest.raises(FetchError, match="may not be fetched"):
        f.fetch(server.url("/doc.json", "cimd.test"))
    assert calls == ["cimd.test"]
    assert server.seen == []


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_one_private_answer_taints_the_name(tmp_path: Path, server: DocumentServer) -> None:
    f = fetcher(tmp_path, allow=AllowList(), resolve=resolver("8.8.8.8", "10.0.0.1"))
    with pytest.raises(FetchError, match="may not be fetched"):
        f.fetch(server.url("/doc.json", "cimd.test"))
    assert server.seen == []


def test_real_resolution_of_localhost_is_refused(tmp_path: Path, server: DocumentServer) -> None:
    f = fetcher(tmp_path, allow=AllowList())
    with pytest.raises(FetchError, match="may not be fetched"):
        f.fetch(server.url("/doc.json", "localhost"))
    with pytest.raises(FetchError, match="may not be fetched"):
        f.fetch(server.url("/doc.json", "127.0.0.1"))
    assert server.seen == []


@pytest.mark.parametrize(
    "entries", [["cimd.test"], ["127.0.0.0/8"], ["127.0.0.1"], ["other.test", " 127.0.0.1 "]]
)
def test_allow_list_by_host_or_network(
    tmp_path: Path, server: DocumentServer, entries: list[str]
) -> None:
    server.routes["/doc.json"] = Route.json(DOC)
    f = fetcher(tmp_path, allow=AllowList.parse(entries), resolve=resolver("127.0.0.1"))
    assert f.fetch(server.url("/doc.json", "cimd.test")).body == b'{"client_id": "x"}'


@pytest.mark.parametrize("entry", ["not a host", "10.0.0.0/33", "https://x.test", "a/b"])
def test_allow_list_refuses_garbage(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse([entry])


def test_connects_to_the_checked_address_only(tmp_path: Path, server: DocumentServer) -> None:
    """IP pinning: the name is resolved once, by the fetcher; the connection goes to that
    address (a second, rebinding answer is never asked for), while TLS and Host still use the
    name, so the certificate is checked for it."""
    server.routes["/doc.json"] = Route.json(DOC)
    answers = iter(["127.0.0.1", "10.0.0.1"])
    calls: list[str] = []

    def rebinding(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    f = fetcher(tmp_path, resolve=rebinding)
    document = f.fetch(server.url("/doc.json", "rebind.test"))
    assert document.url == server.url("/doc.json", "rebind.test")
    assert calls == ["rebind.test"]
    assert [(s.path, s.host) for s in server.seen] == [("/doc.json", f"rebind.test:{server.port}")]


def test_tries_each_checked_address_in_order(tmp_path: Path, server: DocumentServer) -> None:
    server.routes["/doc.json"] = Route.json(DOC)
    # ::1 first (nothing listens there on this port), then 127.0.0.1: both were checked.
    f = fetcher(tmp_path, allow=AllowList.parse(["cimd.test"]), resolve=resolver("::1"))
    with pytest.raises(FetchError, match="could not be reached"):
        f.fetch(server.url("/doc.json", "cimd.test"))
    both = HttpsFetcher(
        ca_bundle=str(tmp_path / "ca.pem"),
        allow=AllowList.parse(["cimd.test"]),
        resolve=lambda host, port, **_: [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ],
    )
    assert both.fetch(server.url("/doc.json", "cimd.test")).body


def test_certificate_must_verify(tmp_path: Path, server: DocumentServer) -> None:
    server.routes["/doc.json"] = Route.json(DOC)
    untrusting = HttpsFetcher(allow=AllowList.parse(["127.0.0.1"]))  # system trust only
    with pytest.raises(FetchError, match="TLS certificate could not be verified"):
        untrusting.fetch(server.url("/doc.json"))


def test_certificate_must_name_the_host(tmp_path: Path, server: DocumentServer) -> None:
    server.routes["/doc.json"] = Route.json(DOC)
    f = fetcher(tmp_path, resolve=resolver("127.0.0.1"))
    with pytest.raises(FetchError, match="TLS certificate"):
        f.fetch(server.url("/doc.json", "elsewhere.test"))
    assert server.seen == []


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/doc.json", "ftp://127.0.0.1/doc.json", "https:///doc.json", "not a url"],
)
def test_only_https(tmp_path: Path, server: DocumentServer, url: str) -> None:
    calls: list[str] = []
    with pytest.raises(FetchError):
        fetcher(tmp_path, resolve=resolver("127.0.0.1", calls=calls)).fetch(url)
    assert calls == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(tmp_path: Path, server: DocumentServer, status: int) -> None:
    server.routes["/moved.json"] = Route(
        b"", status, {"Location": server.url("/doc.json"), "Content-Type": "application/json"}
    )
    server.routes["/doc.json"] = Route.json(DOC)
    with pytest.raises(FetchError, match=f"redirect \\({status}\\)"):
        fetcher(tmp_path).fetch(server.url("/moved.json"))
    assert [s.path for s in server.seen] == ["/moved.json"]


@pytest.mark.parametrize("status", [404, 500, 204])
def test_other_status_is_refused(tmp_path: Path, server: DocumentServer, status: int) -> None:
    server.routes["/doc.json"] = Route(b"{}", status)
    with pytest.raises(FetchError, match=f"HTTP {status}"):
        fetcher(tmp_path).fetch(server.url("/doc.json"))


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_size_cap(tmp_path: Path, server: DocumentServer, length: bool) -> None:
    big = b'{"pad": "' + b"x" * 70_000 + b'"}'
    server.routes["/big.json"] = Route(
        big, headers={"Content-Type": "application/json"}, length=length
    )
    with pytest.raises(FetchError, match="larger than 65536 bytes"):
        fetcher(tmp_path).fetch(server.url("/big.json"))
    exact = b'"' + b"x" * (65536 - 2) + b'"'
    server.routes["/exact.json"] = Route(
        exact, headers={"Content-Type": "application/json"}, length=length
    )
    assert len(fetcher(tmp_path).fetch(server.url("/exact.json")).body) == 65536


def test_slow_server_hits_the_deadline(tmp_path: Path, server: DocumentServer) -> None:
    server.routes["/slow.json"] = Route.json(DOC, delay=2)
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer in time"):
        fetcher(tmp_path, total_timeout=0.5).fetch(server.url("/slow.json"))
    assert time.monotonic() - started < 1.5


def test_trickling_server_hits_the_total_deadline(tmp_path: Path, server: DocumentServer) -> None:
    """Each chunk arrives well within a read timeout; the overall deadline still ends it."""
    server.routes["/trickle.json"] = Route.json({"pad": "x" * 400}, chunk_delay=0.1)
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer in time"):
        fetcher(tmp_path, total_timeout=0.6).fetch(server.url("/trickle.json"))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/jwk-set+json", True),
        ("text/html", False),
        ("text/plain", False),
        ("application/javascript", False),
        ("", False),
    ],
)
def test_content_type_must_be_json(
    tmp_path: Path, server: DocumentServer, content_type: str, ok: bool
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    server.routes["/doc.json"] = Route(b"{}", headers=headers)
    if ok:
        assert fetcher(tmp_path).fetch(server.url("/doc.json")).content_type == content_type
    else:
        with pytest.raises(FetchError, match="not served as application/json"):
            fetcher(tmp_path).fetch(server.url("/doc.json"))


def test_compressed_body_is_refused(tmp_path: Path, server: DocumentServer) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    server.routes["/doc.json"] = Route(b"\x1f\x8b", headers=headers)
    with pytest.raises(FetchError, match="compressed"):
        fetcher(tmp_path).fetch(server.url("/doc.json"))


def test_request_headers_and_cache_control(tmp_path: Path, server: DocumentServer) -> None:
    server.routes["/doc.json"] = Route.json(DOC, cache_control="public, max-age=600")
    document = fetcher(tmp_path).fetch(server.url("/doc.json"))
    assert document.max_age == 600
    assert document.body == b'{"client_id": "x"}'


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("max-age=600", 600),
        ("public, max-age=60, must-revalidate", 60),
        ('max-age="30"', 30),
        ("s-maxage=900", None),
        ("no-store", 0),
        ("no-cache, max-age=600", 0),
        ("private", None),
    ],
)
def test_max_age_parsing(header: str | None, seconds: int | None) -> None:
    assert max_age(header) == seconds
