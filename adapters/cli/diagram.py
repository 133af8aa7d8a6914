"""The agent-upgrade state diagram, drawn by transitions from the engine's own table."""

from __future__ import annotations

from transitions.extensions import GraphMachine

from dma_upgrade.engine.upgrade_machine import TRANSITIONS, UpgradeState


class _Drawing:
    """A model to attach to the drawing machine."""


def mermaid_diagram() -> str:
    """The state table as a Mermaid ``stateDiagram-v2``, with each transition's conditions."""
    machine = GraphMachine(model=None, states=[s.value for s in UpgradeState], transitions=TRANSITIONS,
                           initial=UpgradeState.SCHEDULED.value, auto_transitions=False,
                           graph_engine="mermaid", show_conditions=True, title="Agent upgrade")
    drawing = _Drawing()
    machine.add_model(drawing)
    lines = drawing.get_graph().draw(None).splitlines()  # type: ignore[attr-defined]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("Class ", "classDef "))) + "\n"
