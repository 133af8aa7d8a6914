"""Ports of the runtime: letting time pass, holding work under a lease, handing upgrades out.

They are the runtime's, not the engine's: the decisions in ``engine/decisions.py`` take time and leases
as plain values, and never wait or block.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Protocol
from uuid import UUID

from dma_upgrade.engine.agent_upgrade import AgentUpgrade


class Stopping(Exception):
    """This engine process is shutting down: each drive stops at its next check, leaving the rest to the next
    process, which resumes from the events (a step whose intent is recorded is asked about first)."""


class Waiter(Protocol):
    """Lets time pass: real waiting in production, a fake clock advancing under test."""

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` have passed."""
        ...


class Lease(Protocol):
    """The right to drive one piece of work (a rollout or an agent upgrade), held by one engine process.

    Semantics every implementation keeps:

    - A lease is claimed for a time and renewed by heartbeat; a holder that stops renewing (it died,
      hung or lost the database) loses it when it expires, and another process may then claim it.
    - ``check`` costs no I/O. It raises ``LeaseLost`` once the lease may have expired or been taken
      over, and raises forever after. The engine calls it before every decision and every command to
      an agent; its appends also name the stream version they saw, so a stale holder's append fails.
    """

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this process still holds the lease."""
        ...


class WorkQueue(Protocol):
    """Where a rollout's runner hands out the agent upgrades it starts, for whichever engine claims them.

    Semantics every implementation keeps:

    - ``hand_out`` records that upgrades may be driven now; handing out one already handed out is a
      no-op. It is given each upgrade as the runner last saw it: a driver in the same process may start
      from that (its appends name the stream version it saw, so a stale one is read again on the
      conflict). An upgrade stays handed out (in flight for its rollout) until the engine process
      driving it ends it (completed, failed or cancelled); a driver that dies leaves it handed out,
      for another process to take over once its lease expires.
    - Each returned future is resolved once the upgrade is no longer handed out: with the upgrade as
      its driver left it when that driver ran in this process, otherwise with None (read it again).
    """

    def hand_out(self, rollout_id: UUID,
                 upgrades: Mapping[UUID, AgentUpgrade]) -> dict[UUID, Future[AgentUpgrade | None]]:
        """Let any engine process claim and drive these upgrades (by id) of ``rollout_id``."""
        ...

    def handed_out(self, rollout_id: UUID) -> dict[UUID, Future[AgentUpgrade | None]]:
        """The upgrades of ``rollout_id`` handed out and not yet ended (what a new runner finds in flight)."""
        ...
