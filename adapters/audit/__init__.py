"""The audit trail: exports of the event log and the hash-chain check."""
