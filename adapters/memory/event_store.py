"""An in-memory event store with the same contract as the SQL one (for unit tests and tools)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.event_log import build_records, duplicate_ids, resolve_stale_append
from dma_upgrade.engine.events import NewEvent, RecordedEvent, StoredRecord
from dma_upgrade.engine.hashchain import GENESIS_HASH
from dma_upgrade.engine.ports import AppendResult, Clock


class InMemoryEventStore:
    """Keeps every record in a list; thread-safe; forgets everything when dropped."""

    def __init__(self, codec: EventCodec, clock: Clock) -> None:
        self._codec = codec
        self._clock = clock
        self._records: list[StoredRecord] = []
        self._streams: dict[str, list[StoredRecord]] = {}
        self._by_id: dict[object, StoredRecord] = {}
        self._lock = threading.Lock()

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> AppendResult:
        with self._lock:
            stream = self._streams.get(stream_id, [])
            if len(stream) != expected_version:
                stored = {new.event_id: (r.stream_id, r.stream_version, r.position)
                          for new in events if (r := self._by_id.get(new.event_id)) is not None}
                return resolve_stale_append(stream_id, expected_version, len(stream), events, stored)
            reused = [new.event_id for new in events if new.event_id in self._by_id]
            if reused:
                raise duplicate_ids(stream_id, reused)
            head_hash = self._records[-1].hash if self._records else GENESIS_HASH
            records = build_records(self._codec, events, stream_id=stream_id, stream_version=len(stream),
                                    head_position=len(self._records), head_hash=head_hash,
                                    recorded_at=self._clock.now())
            self._records.extend(records)
            self._streams.setdefault(stream_id, []).extend(records)
            self._by_id.update((r.event_id, r) for r in records)
            return AppendResult(positions=tuple(r.position for r in records),
                                stream_version=expected_version + len(records))

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        with self._lock:
            stream = list(self._streams.get(stream_id, [])[after_version:])
        return [self._codec.decode_record(r) for r in stream]

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        position = after
        while True:
            with self._lock:
                page = self._records[position:position + page_size]
            if not page:
                return
            yield from page
            position = page[-1].position

    def read_all(self, after: int = 0, page_size: int = 1000) -> Iterator[RecordedEvent]:
        for record in self.read_records(after, page_size):
            yield self._codec.decode_record(record)

    def read_category(self, prefix: str) -> Iterator[RecordedEvent]:
        with self._lock:
            records = [r for r in self._records if r.stream_id.startswith(prefix)]
        for record in records:
            yield self._codec.decode_record(record)

    def head_position(self) -> int:
        with self._lock:
            return len(self._records)
