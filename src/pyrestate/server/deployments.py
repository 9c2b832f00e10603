"""What the server may contact as a deployment, and what of a deployment's address it may show.

Addresses: a deployment URI makes the server open connections wherever it points, so an admin client could
reach a cloud metadata service or the host's link-local network through it. The deny list (by default the
link-local ranges and the metadata addresses of the big clouds) is checked at registration and again
before every connection; an allow list, when given, admits only what it names and overrides the deny list.
Loopback stays allowed: that is where local services and tests run.

Secrets: a URI's userinfo (`user:password@`) and the values of headers given at registration are stored and
sent in full, but shown as `***` everywhere (admin API, console, SQL, CLI, error messages).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

REDACTED = "***"

DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local, the AWS/GCP/Azure/OpenStack metadata 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure wire server
    "metadata.google.internal",
    "metadata",
)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def redact_uri(uri: str) -> str:
    """`uri` with its userinfo replaced by `***` (unchanged when it has none)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:authority_end]
    if "@" not in authority:
        return uri
    return f"{scheme}://{REDACTED}@{authority.rpartition('@')[2]}{rest[authority_end:]}"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return dict.fromkeys(headers, REDACTED)


class DeniedAddress(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class _Rule:
    network: IpNetwork | None = None
    host: str | None = None  # exact name, or a suffix when it starts with "*."

    def matches(self, host: str, addresses: Iterable[IpAddress]) -> bool:
        if self.host is not None:
            if self.host.startswith("*."):
                return host.endswith(self.host[1:])
            return host == self.host
        assert self.network is not None
        return any(a.version == self.network.version and a in self.network for a in addresses)


def _rule(text: str) -> _Rule:
    t = text.strip().lower()
    try:
        return _Rule(network=ipaddress.ip_network(t.strip("[]"), strict=False))
    except ValueError:
        return _Rule(host=t.rstrip("."))


def check_pattern(text: str) -> str:
    """Validates one allow/deny entry (a CIDR, an address, a host name or `*.domain`)."""
    t = text.strip()
    if not t or (any(c in t for c in " /:@") and _rule(t).network is None):
        raise ValueError(f"expected a CIDR, an IP address or a host name, got {text!r}")
    return t


def address_policy(allow: Iterable[str], deny: Iterable[str] | None) -> AddressPolicy:
    return AddressPolicy(allow, DEFAULT_DENY if deny is None else deny)


class AddressPolicy:
    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = DEFAULT_DENY) -> None:
        self.allow = [_rule(p) for p in allow]
        self.deny = [_rule(p) for p in deny]

    def _verdict(self, host: str, addresses: list[IpAddress]) -> str | None:
        if self.allow:
            if any(r.matches(host, addresses) for r in self.allow):
                return None
            return "it is not in --deployment-allow"
        if any(r.matches(host, addresses) for r in self.deny):
            return "it is in --deployment-deny (by default link-local and cloud metadata addresses)"
        return None

    async def check(self, uri: str) -> None:
        """Raises DeniedAddress when `uri`'s host, or any address it resolves to, is not allowed."""
        host = (urlsplit(uri).hostname or "").lower().rstrip(".")
        if not self.allow and not self.deny:
            return
        addresses: list[IpAddress] = []
        try:
            addresses.append(ipaddress.ip_address(host))
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError:
                infos = []  # unresolvable: the connection fails on its own, with its own error
            for info in infos:
                try:
                    addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                except ValueError:
                    continue
        mapped: list[IpAddress] = [
            m for a in addresses if isinstance(a, ipaddress.IPv6Address) and (m := a.ipv4_mapped) is not None
        ]
        reason = self._verdict(host, addresses + mapped)
        if reason is not None:
            shown = ", ".join(sorted({str(a) for a in addresses})) or host
            raise DeniedAddress(f"the deployment address {host} ({shown}) is not allowed: {reason}")
