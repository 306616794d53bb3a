"""Which addresses a fetch may connect to: public unicast only, unless explicitly allowed.

A client chooses the URL, so without these rules it could make authgate request cloud
metadata services (169.254.169.254), the loopback interface or the private network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Not always covered by the ipaddress flags, depending on the Python version.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (RFC 6598)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("2001::/32"),  # Teredo: tunnels to an IPv4 address
    ipaddress.ip_network("fc00::/7"),  # unique local
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated)
)
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")
# IPv6 prefixes that embed an IPv4 address, which must itself be public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address (and so safe to fetch from)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:10.0.0.1 reaches 10.0.0.1
            return is_public(ip.ipv4_mapped)
        if ip.sixtofour is not None:  # 2002:0a00:0001:: tunnels to 10.0.0.1
            return is_public(ip.sixtofour)
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _NAT64_LOCAL:
            return False
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        return False
    return not any(ip.version == net.version and ip in net for net in _EXTRA_BLOCKED)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts and networks exempt from the public-address rule (development and tests)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """``entries``: host names, IP addresses or CIDR networks; raises ValueError."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if (
                    "/" in entry
                    or ":" in entry
                    or not entry.replace("-", "").replace(".", "").isalnum()
                ):
                    raise ValueError(f"not a host name or network: {raw!r}") from None
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


def permitted(ip: IPAddress, host: str, allow: AllowList) -> bool:
    return is_public(ip) or allow.allows_host(host) or allow.allows_address(ip)
