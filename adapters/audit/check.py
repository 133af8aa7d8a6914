"""Checking the audit trail: the whole hash chain, and optionally an anchor from an earlier export."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dma_upgrade.adapters.progress_report import LogWalk, Reporter
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.hashchain import ChainVerdict, verify_chain
from dma_upgrade.engine.ports import EventStore

_ANCHOR = re.compile(r"([0-9a-f]{64})@([0-9]{1,19})")
MAX_POSITION = 2**63 - 1
"""The largest position a log can hold (a signed 64-bit integer, in SQLite and PostgreSQL alike)."""


@dataclass(frozen=True)
class AuditReport:
    """The verdict on the chain, and on the anchor when one was given (``anchor_problem`` empty if it holds)."""

    chain: ChainVerdict
    anchor: str | None = None
    anchor_problem: str = ""

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.anchor_problem

    @property
    def problem(self) -> str:
        """One line saying what is wrong ("" when all is well)."""
        if not self.chain.ok:
            return (f"hash chain broken at position {self.chain.broken_at}: {self.chain.reason} "
                    f"({self.chain.verified} events verified before it)")
        return self.anchor_problem


def parse_anchor(anchor: str) -> tuple[str, int]:
    """``HASH@POSITION`` as (hash, position from 1 to ``MAX_POSITION``); ``InvalidInput`` for anything else."""
    match = _ANCHOR.fullmatch(anchor.strip())
    position = int(match.group(2)) if match is not None else 0
    if match is None or not 1 <= position <= MAX_POSITION:
        raise InvalidInput(f"an anchor must be HASH@POSITION (64 hex digits, a position from 1 to {MAX_POSITION}), "
                           f"got {anchor!r}")
    return match.group(1), position


def check_audit(store: EventStore, anchor: str | None = None, reporter: Reporter | None = None) -> AuditReport:
    """Walk the whole chain (telling ``reporter`` the positions walked of the head's); with ``anchor``, also check
    the log still holds that event unchanged."""
    expected = parse_anchor(anchor) if anchor is not None else None
    walk = LogWalk(reporter, store.head_position())
    verdict = verify_chain(walk.records(store.read_records(page_size=5000)))
    if expected is None or not verdict.ok:
        return AuditReport(verdict, anchor)
    digest, position = expected
    record = next(store.read_records(after=position - 1, page_size=1), None)
    if record is None or record.position != position:
        return AuditReport(verdict, anchor, f"anchor position {position} is no longer in the log")
    if record.hash != digest:
        return AuditReport(verdict, anchor, f"anchor mismatch at position {position}: the log holds {record.hash}")
    return AuditReport(verdict, anchor)
