"""The runtime that carries out the engine's decisions: threads, agent calls, waits, leases."""
