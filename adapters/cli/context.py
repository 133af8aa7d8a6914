"""What every command needs: the wired services for the database the global options chose."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import typer
from rich.console import Console

from adapters.bootstrap import Container, bootstrap
from adapters.http_gateway import HttpAgentGateway
from adapters.package_store import FilePackageStore
from adapters.settings import Settings
from adapters.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from engine.ports import AgentGateway
from engine.service import UpgradeService
from engine.upgrade_events import Step

out = Console(highlight=False, soft_wrap=True)


class RealWaiter:
    """Waits in real time."""

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


def actor() -> str:
    """Who runs this command: ``DMA_UPGRADE_ACTOR``, else the login name."""
    return os.environ.get("DMA_UPGRADE_ACTOR") or os.environ.get("USER") or "cli"


@dataclass
class Session:
    """One command's services."""

    container: Container
    service: UpgradeService
    packages: FilePackageStore


@contextlib.contextmanager
def session(ctx: typer.Context, gateway: AgentGateway | None = None) -> Iterator[Session]:
    """Open the configured database for one command and close it afterwards."""
    settings: Settings = ctx.obj
    container = bootstrap(settings)
    try:
        service = UpgradeService(container.store, container.clock, container.ids, gateway)
        yield Session(container, service, FilePackageStore(settings.data_dir / "packages"))
    finally:
        container.close()


def gateway_for(settings: Settings, service: UpgradeService) -> AgentGateway:
    """The agent gateway the settings choose (``DMA_UPGRADE_AGENT_GATEWAY``)."""
    if settings.agent_gateway == "http":
        return HttpAgentGateway()
    return simulated_gateway_for(service, settings.simulated_step_seconds)


def simulated_gateway_for(service: UpgradeService, step_seconds: float) -> SimulatedAgentGateway:
    """A simulation of the inventory, for trying the engine without agents; each step takes ``step_seconds``."""
    return SimulatedAgentGateway([SimulatedAgent(name=a.name, address=a.address, cluster=a.cluster,
                                                 version=a.version, facts=a.facts)
                                  for a in service.agents()],
                                 sleeper=time.sleep, step_seconds=dict.fromkeys(Step, step_seconds))
