"""Reading a transitions ``Machine`` as a table: where one trigger leads from one state."""

from __future__ import annotations

from typing import Any

from transitions import Machine, MachineError


def destination(machine: Machine, model: Any, state: str, trigger: str) -> str | None:
    """The state ``trigger`` moves ``model`` to from ``state``, or None when the machine does not allow it.

    The model is attached for this one question and detached again; the machine keeps no trace of it.
    """
    machine.add_model(model, initial=state)
    try:
        moved = bool(getattr(model, "trigger")(trigger))  # noqa: B009 - bound by the machine
    except (MachineError, AttributeError):
        moved = False
    finally:
        machine.remove_model(model)
    return str(model.state) if moved else None
