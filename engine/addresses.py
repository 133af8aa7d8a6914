"""Agent addresses: ``host[:port]``, parsed strictly, and the networks an operator lets agents be in.

An address is a DNS name (RFC 1123 labels: ASCII letters, digits and inner hyphens, at most 253
characters, its last label not a number), an IPv4 address in dotted-quad form, or an IPv6 address in
brackets; then, optionally, ``:`` and a port from 1 to 65535. Nothing else: no scheme, user, path,
query, fragment, zone id or white space. The canonical form is lower-case, the IP in its compressed
form, and the port only when one was given.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dma_upgrade.engine.errors import InvalidInput, shown

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORT = 80
"""The port an address without one is reached at."""

MAX_ADDRESS_LENGTH = 261
"""The longest address: a 253-character name, ``:`` and a five-digit port (a bracketed IPv6 is shorter)."""

LINK_LOCAL: tuple[Network, ...] = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
"""Where cloud metadata services answer; refused unless the agent networks list one of these explicitly."""

_ADDRESS = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
_GRAMMAR = "use host[:port]: a DNS name, an IPv4 address or an [IPv6] address, and a port from 1 to 65535"


@dataclass(frozen=True)
class AgentEndpoint:
    """A parsed agent address: the host (lower-case name, or an IP in compressed form) and the port if given."""

    host: str
    port: int | None = None

    @property
    def ip(self) -> IPAddress | None:
        """The host as an IP address, or None for a DNS name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def netloc(self) -> str:
        """The canonical ``host[:port]`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_port(self) -> int:
        return DEFAULT_PORT if self.port is None else self.port

    def same_place(self, other: AgentEndpoint) -> bool:
        """Whether both name one host and port (``h`` and ``h:80`` do)."""
        return (self.host, self.effective_port) == (other.host, other.effective_port)

    def __str__(self) -> str:
        return self.netloc


def parse_address(text: str) -> AgentEndpoint:
    """``text`` as an ``AgentEndpoint``; ``InvalidInput`` saying why for anything but ``host[:port]``."""
    if len(text) > MAX_ADDRESS_LENGTH:
        raise _invalid(text, f"longer than {MAX_ADDRESS_LENGTH} characters")
    found = _ADDRESS.fullmatch(text)
    if found is None:
        raise _invalid(text, _what_is_wrong(text))
    port = None if found["port"] is None else int(found["port"])
    if port is not None and not 1 <= port <= 65535:
        raise _invalid(text, f"port {port} is not from 1 to 65535")
    if found["ipv6"] is not None:
        try:
            return AgentEndpoint(str(ipaddress.IPv6Address(found["ipv6"])), port)
        except ValueError:
            raise _invalid(text, "the part in brackets is not an IPv6 address") from None
    host = found["host"].lower()
    try:
        return AgentEndpoint(str(ipaddress.IPv4Address(host)), port)
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _invalid(text, "not a DNS name (labels of letters, digits and inner hyphens, at most 253 characters)")
    if _NUMBER.fullmatch(labels[-1]):
        raise _invalid(text, "not an IPv4 address in dotted-quad form, nor a DNS name (its last label is a number)")
    return AgentEndpoint(host, port)


def canonical_address(text: str) -> str:
    """The canonical form of an address that parses; any other text unchanged (an older event may hold it)."""
    try:
        return parse_address(text.strip()).netloc
    except InvalidInput:
        return text


@dataclass(frozen=True)
class AddressPolicy:
    """Which IP addresses agents may have (``DMA_UPGRADE_AGENT_NETWORKS``).

    With no networks, any address but a link-local one; with networks, only addresses inside one of them.
    A link-local address (cloud metadata) needs a listed network inside ``LINK_LOCAL`` that holds it
    (``0.0.0.0/0`` does not open it). Loopback is a network like any other: allowed unless networks are
    listed and leave it out. DNS names are judged by what they resolve to, when an agent is called.
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def from_setting(cls, text: str | None) -> AddressPolicy:
        """The policy of comma-separated CIDRs (``10.20.0.0/16,fd00::/8``); unset or blank: no networks."""
        networks: list[Network] = []
        for part in (text or "").split(","):
            if part.strip():
                try:
                    networks.append(ipaddress.ip_network(part.strip(), strict=False))
                except ValueError:
                    raise InvalidInput(f"agent networks: {shown(part.strip(), 60)} is not a network in CIDR form "
                                       f"(e.g. 10.20.0.0/16 or fd00::/8)") from None
        return cls(tuple(networks))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why an agent may not be at ``ip``, or None when it may (an IPv4-mapped IPv6 address counts as IPv4)."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        holding = [network for network in self.networks if ip in network]
        if self.networks and not holding:
            return (f"{ip} is outside the agent networks ({', '.join(map(str, self.networks))}; "
                    f"DMA_UPGRADE_AGENT_NETWORKS)")
        zone = next((zone for zone in LINK_LOCAL if ip in zone), None)
        if zone is not None and not any(network.network_address in zone and network.prefixlen >= zone.prefixlen
                                        for network in holding):
            return (f"{ip} is link-local (where cloud metadata answers); list its network in "
                    f"DMA_UPGRADE_AGENT_NETWORKS to allow it")
        return None

    def check(self, endpoint: AgentEndpoint) -> AgentEndpoint:
        """``endpoint`` if an agent may be there; ``InvalidInput`` for a refused IP (names pass: see above)."""
        ip = endpoint.ip
        reason = None if ip is None else self.refusal(ip)
        if reason is not None:
            raise InvalidInput(f"agent address {endpoint} is refused: {reason}")
        return endpoint


def _what_is_wrong(text: str) -> str:
    """A hint for an address the grammar refuses."""
    if not text:
        return "it is empty"
    if "://" in text:
        return "give host[:port] without a scheme"
    for mark, what in (("@", "a user"), ("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("%", "a zone id")):
        if mark in text:
            return f"it has {what}"
    if any(not character.isprintable() or character.isspace() for character in text):
        return "it has white space or characters that are not printable"
    if not text.isascii():
        return "it is not ASCII (give an internationalised name in its xn-- form)"
    if text.count(":") > 1 and not text.startswith("["):
        return "an IPv6 address goes in brackets: [::1] or [::1]:9000"
    if ":" in text:
        return "its port is not a number from 1 to 65535"
    return "it does not follow the grammar"


def _invalid(text: str, why: str) -> InvalidInput:
    return InvalidInput(f"invalid address {shown(text, 60)}: {why}; {_GRAMMAR}")
