"""``dma-upgrade agent-sim``: one simulated DataMiner Agent speaking the HTTP agent protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dma_upgrade.adapters.agents.simulated_gateway import DEFAULT_VERSION, SimulatedAgent
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.versions import parse_version


@reports_errors
def agent_sim(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="the TCP port to listen on")],
    name: Annotated[str, typer.Option(help="the agent's name")],
    cluster: Annotated[str | None, typer.Option(help="the cluster (DMS) the agent belongs to")] = None,
    version: Annotated[str, typer.Option(help="the version the agent runs at its first start")] = DEFAULT_VERSION,
    address: Annotated[str | None, typer.Option(
        help="the address the agent reports about itself (default 127.0.0.1:PORT)")] = None,
    step_seconds: Annotated[float, typer.Option(
        help="how long each step takes (an install spreads it over its phases)")] = 0.5,
    fail: Annotated[list[str] | None, typer.Option(
        "--fail", metavar="STEP:TIMES", help="the first TIMES attempts of STEP fail (repeatable)")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="where the agent keeps its memory across restarts (default DATA_DIR/agent-sim/NAME)")] = None,
    host: Annotated[str, typer.Option(help="the interface to listen on")] = "127.0.0.1",
) -> None:
    """Run one simulated agent over HTTP (docs/agent-protocol.md), remembering its state across restarts."""
    if not 0 < port < 65536:
        raise InvalidInput(f"--port {port}: expected a TCP port from 1 to 65535")
    if step_seconds < 0:
        raise InvalidInput("--step-seconds must be zero or more")
    parse_version(version)
    settings: Settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings()
    folder = state_dir or settings.data_dir / "agent-sim" / name
    spec = SimulatedAgent(name=name, address=address or f"127.0.0.1:{port}", cluster=cluster, version=version)
    # The web stack is imported here, not at the top: every other command starts without it.
    import uvicorn

    from dma_upgrade.adapters.agents.simulator import create_agent_app, parse_fail

    app = create_agent_app(spec, folder / "state.json", step_seconds, parse_fail(fail or []))
    memory = app.state.served.memory()
    out.print(f"agent {name} ({memory.version}) answers at http://{host}:{port}, state in {folder}",
              markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
