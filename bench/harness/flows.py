"""The interactive parts, one driver for every system (httpx): sign-in, authorize, consent,
code, token. Used to mint authorization codes and refresh tokens before a load run, and to
measure the whole interactive flow per second at low concurrency."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from bench.harness.load import LoadResult
from bench.harness.provision import REDIRECT_URI, RESOURCE_JWT, SCOPE, USERNAME
from bench.harness.systems import PASSWORD, Server

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
MAX_HOPS = 8


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


class FlowError(Exception):
    pass


async def sign_in(browser: httpx.AsyncClient, server: Server) -> None:
    if not server.signs_in:
        return  # the peer's interaction handler signs the benchmark user in
    page = await browser.get("/login")
    match = CSRF.search(page.text)
    if page.status_code != 200 or match is None:
        raise FlowError(f"{server.name}: sign-in page {page.status_code}")
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": match.group(1)}
    resp = await browser.post("/login", data=form)
    if resp.status_code != 303:
        raise FlowError(f"{server.name}: sign-in answered {resp.status_code}")


async def authorize(
    browser: httpx.AsyncClient, server: Server, pkce: Pkce, *, consent: bool
) -> str:
    """Authorize (with prompt=consent when `consent`): follow the server's redirects, allow on a
    consent page, and return the code from the redirect to the client."""
    query = {
        "client_id": server.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "resource": RESOURCE_JWT,
        "state": secrets.token_urlsafe(8),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    if consent:
        query["prompt"] = "consent"
    url = f"{server.paths.authorize}?{urlencode(query)}"
    resp = await browser.get(url)
    for _ in range(MAX_HOPS):
        if resp.status_code in (302, 303):
            location = resp.headers["location"]
            if location.startswith(REDIRECT_URI):
                params = parse_qs(urlsplit(location).query)
                if "code" not in params:
                    raise FlowError(f"{server.name}: redirected without a code: {location}")
                return params["code"][0]
            url = urljoin(str(resp.url), location)
            resp = await browser.get(url)
        elif resp.status_code == 200 and (match := CSRF.search(resp.text)):
            data = {"csrf_token": match.group(1), "decision": "allow"}
            resp = await browser.post(str(resp.url), data=data)
        else:
            raise FlowError(f"{server.name}: authorize answered {resp.status_code}")
    raise FlowError(f"{server.name}: more than {MAX_HOPS} redirects")


async def exchange(
    browser: httpx.AsyncClient, server: Server, code: str, pkce: Pkce
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
    }
    resp = await browser.post(server.paths.token, data=form, auth=server.basic)
    body = resp.json() if resp.status_code == 200 else {}
    if "access_token" not in body:
        raise FlowError(f"{server.name}: code exchange answered {resp.status_code}: {resp.text}")
    return body


def _browser(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, follow_redirects=False, timeout=30)


async def _mint_codes(
    server: Server, count: int, pkce: Pkce, concurrency: int, seconds: float
) -> list[str]:
    codes: list[str] = []
    deadline = time.monotonic() + seconds

    async def worker(share: int) -> None:
        async with _browser(server) as browser:
            await sign_in(browser, server)
            for _ in range(share):
                if time.monotonic() > deadline:
                    return
                codes.append(await authorize(browser, server, pkce, consent=True))

    shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(share) for share in shares if share))
    return codes


def mint_codes(
    server: Server, count: int, pkce: Pkce, concurrency: int = 8, seconds: float = 120
) -> list[str]:
    """Up to `count` codes (fewer when `seconds` run out) through the real authorize flow:
    signed in, authorize with prompt=consent, the consent page, allow, the redirect with the
    code. All with the same PKCE challenge."""
    return asyncio.run(_mint_codes(server, count, pkce, concurrency, seconds))


async def _mint_refresh_tokens(server: Server, count: int) -> list[str]:
    pkce = new_pkce()
    codes = await _mint_codes(server, count, pkce, min(count, 8), 120)
    async with _browser(server) as browser:
        return [(await exchange(browser, server, code, pkce))["refresh_token"] for code in codes]


def mint_refresh_tokens(server: Server, count: int) -> list[str]:
    """One refresh token per chain: a code each, exchanged."""
    return asyncio.run(_mint_refresh_tokens(server, count))


def client_credentials(server: Server, resource: str) -> str:
    form = {"grant_type": "client_credentials", "resource": resource, "scope": SCOPE}
    resp = httpx.post(server.url + server.paths.token, data=form, auth=server.basic, timeout=30)
    body = resp.json() if resp.status_code == 200 else {}
    if "access_token" not in body:
        raise FlowError(f"{server.name}: client_credentials answered {resp.status_code}")
    token: str = body["access_token"]
    return token


async def _interactive(server: Server, duration: float, concurrency: int) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    browsers = [_browser(server) for _ in range(concurrency)]
    try:
        # Every browser signs in first (a password hash each): the clock starts after.
        await asyncio.gather(*(sign_in(browser, server) for browser in browsers))
        deadline = time.monotonic() + duration

        async def worker(browser: httpx.AsyncClient) -> None:
            nonlocal errors
            pkce = new_pkce()
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    code = await authorize(browser, server, pkce, consent=True)
                    await exchange(browser, server, code, pkce)
                except (FlowError, httpx.HTTPError, ValueError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(worker(browser) for browser in browsers)), timeout=duration + 60
        )
        elapsed = time.monotonic() - started
    finally:
        for browser in browsers:
            await browser.aclose()
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return LoadResult(len(latencies), elapsed, errors, pct(0.5), pct(0.99))


def interactive(server: Server, duration: float, concurrency: int) -> LoadResult:
    """Whole flows per second: authorize (prompt=consent) -> consent -> code -> token."""
    return asyncio.run(_interactive(server, duration, concurrency))
