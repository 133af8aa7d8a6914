"""An agent's address is ``host[:port]``, parsed strictly and stored canonical; the agent networks say where
agents may be; names and clusters are whole-string rules (a trailing newline is not a second agent)."""

from __future__ import annotations

import ipaddress

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.addresses import AddressPolicy, AgentEndpoint, canonical_address, parse_address
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import Conflict, InvalidInput
from dma_upgrade.engine.service import UpgradeService
from tests.conftest import FakeClock

OLD = "10.4.0.0-14112"


@pytest.mark.parametrize(("text", "host", "port", "canonical"), [
    ("agent1", "agent1", None, "agent1"),
    ("agent1.example.com:8080", "agent1.example.com", 8080, "agent1.example.com:8080"),
    ("Agent1.Example.COM:08080", "agent1.example.com", 8080, "agent1.example.com:8080"),
    ("10.0.0.1", "10.0.0.1", None, "10.0.0.1"),
    ("127.0.0.1:65535", "127.0.0.1", 65535, "127.0.0.1:65535"),
    ("[::1]:9000", "::1", 9000, "[::1]:9000"),
    ("[FD00:0:0::0001]", "fd00::1", None, "[fd00::1]"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example", None, "xn--bcher-kva.example"),
])
def test_an_address_is_host_and_an_optional_port_stored_canonical(text: str, host: str, port: int | None,
                                                                   canonical: str) -> None:
    parsed = parse_address(text)
    assert (parsed.host, parsed.port, parsed.netloc) == (host, port, canonical)
    assert parse_address(parsed.netloc) == parsed


@pytest.mark.parametrize(("text", "why"), [
    ("user:pass@h", "a user"), ("h/path", "a path"), ("h?x", "a query"), ("h#x", "a fragment"),
    ("file:///etc/passwd", "without a scheme"), ("http://h", "without a scheme"), ("h:0", "port 0"),
    ("h:65536", "port 65536"), ("h:01x", "port"), ("h:", "port"), ("", "empty"), ("a b", "white space"),
    (" agent1", "white space"), ("agent1\n", "white space"), ("agent1\x00", "not printable"),
    ("::1:9000", "brackets"), ("fe80::1", "brackets"), ("[fe80::1%eth0]:80", "zone id"), ("[10.0.0.1]", "IPv6"),
    ("127.1", "last label is a number"), ("2130706433", "last label is a number"), ("010.0.0.1", "number"),
    ("0x7f.0.0.1", "number"), ("a..b", "not a DNS name"), ("-a.example", "not a DNS name"),
    ("a.example.", "not a DNS name"), ("under_score.example", "grammar"), ("bücher.example", "ASCII"),
    ("a" * 64 + ".example", "not a DNS name"), (".".join(["a" * 63] * 4) + ".b", "at most 253"),
    ("a" * 300, "longer than 261"),
])
def test_anything_else_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=r"invalid address .*host\[:port\]") as refusal:
        parse_address(text)
    assert why in str(refusal.value)
    assert str(refusal.value).isprintable()


def test_h_and_h_port_80_are_one_place() -> None:
    assert parse_address("h").same_place(parse_address("h:80"))
    assert not parse_address("h").same_place(parse_address("h:8080"))


def test_an_older_address_reads_canonical_when_it_parses_and_as_stored_otherwise() -> None:
    assert canonical_address(" DMA-1.Example:0080 ") == "dma-1.example:80"
    assert canonical_address("http://x/admin?y") == "http://x/admin?y"


# -- the agent networks ------------------------------------------------------------------------------


def refusal(policy: AddressPolicy, ip: str) -> str | None:
    return policy.refusal(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254"])
def test_link_local_addresses_are_refused_by_default(ip: str) -> None:
    assert "link-local" in (refusal(AddressPolicy(), ip) or "")


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "10.0.0.1", "192.168.1.5", "2001:db8::5"])
def test_every_other_address_is_allowed_by_default(ip: str) -> None:
    assert refusal(AddressPolicy(), ip) is None


def test_with_agent_networks_only_their_addresses_are_allowed_loopback_included() -> None:
    policy = AddressPolicy.from_setting(" 10.20.0.0/16 , fd00::/8,")
    assert [refusal(policy, ip) is None for ip in ("10.20.3.4", "fd00::7", "10.21.0.1", "127.0.0.1", "::1")] == [
        True, True, False, False, False]
    assert "outside the agent networks (10.20.0.0/16, fd00::/8" in (refusal(policy, "127.0.0.1") or "")
    assert refusal(AddressPolicy.from_setting("127.0.0.0/8,10.20.0.0/16"), "127.0.0.1") is None


def test_a_link_local_address_needs_a_listed_link_local_network() -> None:
    assert refusal(AddressPolicy.from_setting("169.254.169.0/24"), "169.254.169.254") is None
    assert refusal(AddressPolicy.from_setting("fe80::/64"), "fe80::1") is None
    assert "link-local" in (refusal(AddressPolicy.from_setting("0.0.0.0/0"), "169.254.169.254") or "")
    assert "outside" in (refusal(AddressPolicy.from_setting("169.254.169.0/24"), "169.254.1.1") or "")


@pytest.mark.parametrize("setting", [None, "", " , "])
def test_an_unset_or_blank_setting_lists_no_networks(setting: str | None) -> None:
    assert AddressPolicy.from_setting(setting) == AddressPolicy()


@pytest.mark.parametrize("setting", ["10.0.0.0/33", "ten", "10.0.0.0/8;fd00::/8"])
def test_a_setting_that_is_not_cidrs_is_refused(setting: str) -> None:
    with pytest.raises(InvalidInput, match="not a network in CIDR form"):
        AddressPolicy.from_setting(setting)


def test_the_policy_refuses_literal_ips_and_leaves_names_to_the_gateway() -> None:
    policy = AddressPolicy.from_setting("10.0.0.0/8")
    assert policy.check(AgentEndpoint("dma-01.example")) == AgentEndpoint("dma-01.example")
    with pytest.raises(InvalidInput, match=r"agent address 127\.0\.0\.1:9 is refused: 127\.0\.0\.1 is outside"):
        policy.check(parse_address("127.0.0.1:9"))


# -- the service: registration, adding by address, rollouts by address ---------------------------------


class NobodyAsked(SimulatedAgentGateway):
    """A gateway that must not be asked anything."""

    def __init__(self) -> None:
        super().__init__([])

    def identify(self, address: str):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the agent at {address!r} was asked who it is")


def service(policy: AddressPolicy | None = None, gateway: SimulatedAgentGateway | None = None) -> UpgradeService:
    store = InMemoryEventStore(default_codec(), FakeClock())
    return UpgradeService(store, FakeClock(), UuidFactory(), gateway or NobodyAsked(), policy or AddressPolicy())


def register(svc: UpgradeService, name: str = "dma-01", address: str = "10.0.0.1", cluster: str | None = None) -> str:
    return svc.register_agent(name=name, address=address, version=OLD, cluster=cluster, actor="test").address


def test_registration_stores_the_canonical_address() -> None:
    svc = service()
    assert register(svc, address="DMA-01.Example:08080") == "dma-01.example:8080"
    assert register(svc, "dma-02", "[0:0::1]:9000") == "[::1]:9000"


@pytest.mark.parametrize("address", ["file:///etc/passwd", "127.0.0.1:8600/admin?confirm=yes", "user:pass@10.0.0.1",
                                     "169.254.169.254", "[fe80::1]:80", "10.0.0.1\n"])
def test_registration_and_adding_by_address_refuse_a_bad_or_link_local_address(address: str) -> None:
    svc = service()
    with pytest.raises(InvalidInput, match="address"):
        register(svc, address=address)
    with pytest.raises(InvalidInput, match="address"):
        svc.add_agent_by_ip(address, actor="test")
    assert svc.store.head_position() == 0


def test_the_agent_networks_apply_to_registration() -> None:
    svc = service(AddressPolicy.from_setting("10.20.0.0/16"))
    assert register(svc, address="10.20.0.5") == "10.20.0.5"
    with pytest.raises(InvalidInput, match="outside the agent networks"):
        register(svc, "dma-02", "127.0.0.1:8101")
    assert register(svc, "dma-03", "dma-03.example") == "dma-03.example"  # judged by what it resolves to


def test_a_second_agent_at_the_same_place_is_a_conflict() -> None:
    svc = service()
    register(svc, address="dma-01.example")
    with pytest.raises(Conflict, match=r"address dma-01.example:80 belongs to a registered agent already \(dma-01\)"):
        register(svc, "dma-02", "DMA-01.example:80")


def test_adding_by_an_address_in_another_form_finds_the_registered_agent_without_asking() -> None:
    svc = service()
    register(svc, address="dma-01.example:8080")
    assert svc.add_agent_by_ip("DMA-01.EXAMPLE:8080", actor="test").name == "dma-01"


def test_adding_by_address_asks_and_registers_at_the_canonical_address() -> None:
    gateway = SimulatedAgentGateway([SimulatedAgent(name="dma-07", address="10.0.0.7:8101", version=OLD)])
    svc = service(gateway=gateway)
    assert svc.add_agent_by_ip("10.0.0.7:08101", actor="test").address == "10.0.0.7:8101"


@pytest.mark.parametrize("name", ["nl-name\n", "dma-01\n", "-dma", "dma 01", "d" * 101, ""])
def test_a_name_must_be_the_whole_rule_not_a_prefix_of_it(name: str) -> None:
    svc = service()
    register(svc)
    with pytest.raises(InvalidInput, match="invalid agent name"):
        register(svc, name, "10.0.0.2")
    assert [a.name for a in svc.agents()] == ["dma-01"]


@pytest.mark.parametrize("cluster", ["north\n", " north", "north ", "", "c" * 101, "no\x1bth"])
def test_a_cluster_is_printable_bounded_and_unpadded(cluster: str) -> None:
    with pytest.raises(InvalidInput, match="invalid cluster name"):
        register(service(), cluster=cluster)


def test_an_agent_registered_before_addresses_were_checked_still_folds() -> None:
    codec = default_codec()
    older = codec.decode("AgentRegistered", 2, '{"name": "dma-9", "address": " DMA-9.Example ", "version": "'
                         + OLD + '"}')
    raw = codec.decode("AgentRegistered", 1, '{"name": "dma-8", "ip": "http://x/admin?y", "version": "' + OLD + '"}')
    assert isinstance(older, AgentRegistered) and isinstance(raw, AgentRegistered)
    assert (older.address, raw.address) == ("dma-9.example", "http://x/admin?y")
    svc = service()
    svc.append("agent-dma-8", 0, [raw], actor="test")
    assert svc.agent("dma-8").address == "http://x/admin?y"  # kept, never contacted (the gateway refuses it)
    assert register(svc, address="x") == "x"  # an unparseable old address holds no place
