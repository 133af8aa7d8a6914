"""Setting an agent's SNMP ports: the decision (``ports_change``) and the fold of ``AgentPortsChanged``."""

from __future__ import annotations

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import modern_facts
from dma_upgrade.engine.agent_events import AgentFactsReported, AgentPortsChanged, AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import Conflict, InvalidInput
from dma_upgrade.engine.inventory import AgentRecord, fold_agent, ports_change

VERSION = "10.4.0.0-14112"


def agent(*, facts: bool = True) -> AgentRecord:
    events = [AgentRegistered(name="dma-1", address="10.0.0.1", version=VERSION)]
    if facts:
        events.append(AgentFactsReported(facts=modern_facts(VERSION)))
    record = fold_agent(events)
    assert record is not None
    return record


def test_a_change_records_both_ports_and_folds_into_the_facts() -> None:
    record = agent()
    [event] = ports_change(record, 1161, None)
    assert event == AgentPortsChanged(snmp_agent_port=1161, windows_snmp_port=161)
    folded = fold_agent([AgentRegistered(name="dma-1", address="10.0.0.1", version=VERSION),
                         AgentFactsReported(facts=modern_facts(VERSION)), event])
    assert folded is not None and folded.facts is not None
    assert (folded.facts.snmp_agent_port, folded.facts.windows_snmp_port) == (1161, 161)
    assert folded.facts.model_copy(update={"snmp_agent_port": 161}) == modern_facts(VERSION)


def test_reported_facts_replace_ports_set_before() -> None:
    folded = fold_agent([AgentRegistered(name="dma-1", address="10.0.0.1", version=VERSION),
                         AgentFactsReported(facts=modern_facts(VERSION)),
                         AgentPortsChanged(snmp_agent_port=1161, windows_snmp_port=162),
                         AgentFactsReported(facts=modern_facts(VERSION))])
    assert folded is not None and folded.facts is not None and folded.facts.snmp_agent_port == 161


def test_ports_as_they_are_change_nothing() -> None:
    assert ports_change(agent(), 161, 161) == []
    assert ports_change(agent(), None, 161) == []


@pytest.mark.parametrize(("snmp", "windows", "match"), [
    (None, None, "give --snmp-port, --windows-snmp-port or both"),
    (0, None, "invalid UDP port 0: expected 1 to 65535"),
    (None, 65536, "invalid UDP port 65536"),
])
def test_bad_ports_are_invalid_input(snmp: int | None, windows: int | None, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ports_change(agent(), snmp, windows)


def test_an_agent_without_facts_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="agent dma-1 has reported no facts"):
        ports_change(agent(facts=False), 1161, None)


def test_the_event_round_trips_through_the_codec() -> None:
    codec = default_codec()
    event = AgentPortsChanged(snmp_agent_port=1161, windows_snmp_port=162)
    assert codec.decode(*codec.encode(event)) == event
