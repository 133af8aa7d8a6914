"""PostgreSQL: ``dma_append``, the append of a group of events in one statement on the server (issue 17).

The append lock is taken, the head read, each append's expected version checked, the hash chain extended
and the rows inserted inside one statement, which commits on its own: the lock is held for the server's
work only, never across a round trip to the engine process (whose threads may be slow to answer). The chain
is ``hashchain.chain_hash`` written in SQL: ``sha256`` of ``previous hash || '[' || position || before
version || stream version || before time || recorded at || '"]'``, the parts prepared by the caller.

SQLite appends are unchanged (one writer at a time, in the process).

Revision ID: 0012_append_function
Revises: 0011_version_identity
Create Date: 2026-12-05
"""
from __future__ import annotations

from alembic import op

revision = "0012_append_function"
down_revision = "0011_version_identity"
branch_labels = None
depends_on = None

APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION dma_append(
    lock_key bigint,
    streams text[], expected integer[], counts integer[], wakes boolean[],
    event_ids uuid[], event_types text[], schema_versions integer[], payloads text[], actors text[],
    correlation_ids uuid[], causation_ids uuid[], before_versions text[], before_times text[],
    recorded_at timestamptz, stamp text, channel text)
RETURNS TABLE (first_position bigint, actual_version integer)
LANGUAGE plpgsql AS $function$
DECLARE
    head_position bigint;
    head_hash text;
    seen text[] := '{}';
    seen_versions integer[] := '{}';
    slot integer;
    actual integer;
    offset_in_group integer := 0;
    wake boolean := false;
    event integer;
    positions bigint[] := '{}';
    indexes integer[] := '{}';
    stream_of text[] := '{}';
    versions integer[] := '{}';
    hashes text[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.hash INTO head_position, head_hash FROM events e ORDER BY e.position DESC LIMIT 1;
    IF head_position IS NULL THEN
        head_position := 0;
        head_hash := repeat('0', 64);
    END IF;
    FOR a IN 1 .. coalesce(array_length(streams, 1), 0) LOOP
        slot := array_position(seen, streams[a]);
        IF slot IS NULL THEN
            SELECT coalesce(max(e.stream_version), 0) INTO actual FROM events e WHERE e.stream_id = streams[a];
            seen := seen || streams[a];
            seen_versions := seen_versions || actual;
            slot := array_length(seen, 1);
        ELSE
            actual := seen_versions[slot];
        END IF;
        actual_version := actual;
        IF actual <> expected[a] THEN
            first_position := NULL;
        ELSE
            first_position := head_position + 1;
            FOR j IN 1 .. counts[a] LOOP
                event := offset_in_group + j;
                head_position := head_position + 1;
                head_hash := encode(sha256(convert_to(
                    head_hash || '[' || head_position || before_versions[event] || (actual + j)
                    || before_times[event] || stamp || '"]', 'UTF8')), 'hex');
                positions := positions || head_position;
                indexes := indexes || event;
                stream_of := stream_of || streams[a];
                versions := versions || (actual + j);
                hashes := hashes || head_hash;
            END LOOP;
            seen_versions[slot] := actual + counts[a];
            wake := wake OR wakes[a];
        END IF;
        offset_in_group := offset_in_group + counts[a];
        RETURN NEXT;
    END LOOP;
    INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor,
                        correlation_id, causation_id, recorded_at, hash)
    SELECT r.position, event_ids[r.event], r.stream_id, r.stream_version, event_types[r.event],
           schema_versions[r.event], payloads[r.event], actors[r.event], correlation_ids[r.event],
           causation_ids[r.event], recorded_at, r.hash
    FROM unnest(positions, indexes, stream_of, versions, hashes) AS r(position, event, stream_id, stream_version, hash);
    IF wake THEN
        PERFORM pg_notify(channel, '');
    END IF;
END
$function$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS dma_append")
