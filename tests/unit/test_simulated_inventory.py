"""The simulated inventory: registered agents answer from their first call, found through a read of the inventory."""

from __future__ import annotations

import pytest

from dma_upgrade.adapters.agents.simulated_inventory import InventoryLookup, simulated_inventory
from dma_upgrade.engine.errors import AgentUnreachable
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.ports import AgentAddress, PackageRef, StepOutcome
from dma_upgrade.engine.upgrade_events import Step

OLD = "10.4.0.0-14112"
PACKAGE = PackageRef(sha256="cd" * 32, version="10.5.0.0-15000")


class Inventory:
    """The registered agents, counting how often they are read."""

    def __init__(self, *records: AgentRecord) -> None:
        self.records = list(records)
        self.reads = 0

    def __call__(self) -> list[AgentRecord]:
        self.reads += 1
        return list(self.records)


def test_an_agent_registered_after_the_gateway_was_made_answers_from_its_first_call() -> None:
    inventory = Inventory()
    gateway = simulated_inventory(inventory, step_seconds=0.0)
    inventory.records.append(AgentRecord(name="dma-1", address="10.0.0.1", cluster="north", version=OLD))

    assert gateway.perform(AgentAddress("dma-1", "10.0.0.1"), Step.UPLOAD, "u:upload:1", PACKAGE) == StepOutcome()
    assert gateway.agent("dma-1").cluster == "north"


def test_an_address_nobody_registered_is_unreachable() -> None:
    gateway = simulated_inventory(Inventory(AgentRecord(name="dma-1", address="10.0.0.1", cluster=None,
                                                        version=OLD)), step_seconds=0.0)
    with pytest.raises(AgentUnreachable, match=r"10\.0\.0\.9"):
        gateway.perform(AgentAddress("dma-9", "10.0.0.9"), Step.UPLOAD, "u:upload:1", PACKAGE)


def test_the_inventory_is_read_again_only_for_an_address_the_last_read_did_not_have() -> None:
    inventory = Inventory(AgentRecord(name="dma-1", address="10.0.0.1", cluster=None, version=OLD),
                          AgentRecord(name="dma-2", address="10.0.0.2", cluster=None, version=OLD))
    lookup = InventoryLookup(inventory)

    found = [lookup("10.0.0.1"), lookup("10.0.0.2")]
    assert [a.name for a in found if a is not None] == ["dma-1", "dma-2"]
    assert inventory.reads == 1
    assert lookup("10.0.0.3") is None
    assert inventory.reads == 2
