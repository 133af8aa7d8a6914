"""Settings from the environment (``DMA_UPGRADE_*``) or the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the embedded database lives: ``$XDG_DATA_HOME/dma-upgrade`` or ``~/.local/share/dma-upgrade``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dma-upgrade"


class Settings(BaseSettings):
    """Configuration of one dma-upgrade process."""

    model_config = SettingsConfigDict(env_prefix="DMA_UPGRADE_", extra="ignore")

    database_url: str | None = None
    data_dir: Path = default_data_dir()
    agent_gateway: Literal["simulated", "http"] = "simulated"
    """How the engine reaches agents: ``http`` speaks docs/agent-protocol.md to ``host:port`` addresses;
    ``simulated`` drives a simulation of the inventory."""
    agent_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long the HTTP gateway waits for an agent's answer (each read of a step's stream) before retrying."""
    agent_retry_seconds: float = Field(default=30.0, ge=0)
    """How long the HTTP gateway keeps sending a request an agent did not answer (long enough to outlast
    an agent's restart) before the step counts as unreachable."""
    agent_retry_base_seconds: float = Field(default=0.2, gt=0)
    """The HTTP gateway's first backoff bound: retry ``n`` waits a random time up to ``base * 2**n``."""
    agent_retry_cap_seconds: float = Field(default=5.0, gt=0)
    """The longest single backoff wait of the HTTP gateway (at least the base)."""
    simulated_step_seconds: float = 0.0
    """How long each step of the simulated gateway takes in real time (0: at once), to watch a rollout."""
    api_tokens_file: Path | None = None
    """The API's hashed bearer tokens (default ``<data dir>/api-tokens.json``)."""
    ready_max_lag_events: int = 1000
    """Readiness is false while a projection is further behind the head than this."""
    max_upload_bytes: int = 2 * 1024**3
    """The largest package the API accepts (413 beyond it)."""
    lease_seconds: float = Field(default=15.0, gt=0)
    """How long an engine process's leases last unrenewed (its heartbeat renews them every quarter of
    this): a process that dies or hangs has its work taken over by another after at most this long."""
    database_pool_size: int = Field(default=15, ge=3)
    """How many connections to the database one process keeps open and uses at once (PostgreSQL; more callers wait
    for one). Opening a connection costs the server a process, so they are kept rather than opened per call. At
    least 3: the appends keep one, and a projection's catch-up reads on a second while it writes on a third."""
    install_phase_seconds: float = Field(default=5.0, ge=0)
    """The least time between two recorded phase reports of one install (0: every phase). The first phase, and the
    phase an install stood at when its outcome was recorded, are always recorded (``engine.phase_reports``)."""
    engine_capacity: int = Field(default=1000, ge=1)
    """How many agent upgrades one engine process drives at once (a thread each, mostly waiting on agents)."""
    agent_networks: str | None = None
    """Comma-separated CIDRs agents' addresses must fall in (e.g. ``10.20.0.0/16,fd00::/8``). Unset: any address
    but link-local ones (cloud metadata), which only a listed link-local network opens. Loopback is allowed
    unless the list is set and leaves it out."""
    agent_max_answer_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The largest answer the HTTP gateway reads from an agent (bigger answers are cut off and refused)."""
    api_agent_calls: int = Field(default=8, ge=1)
    """How many API requests may wait on agents at once (asking an agent who it is); more answer 503."""
    api_concurrent_uploads: int = Field(default=2, ge=1)
    """How many package uploads the API receives at once; more answer 503."""

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'dma-upgrade.db'}"

    @property
    def resolved_tokens_file(self) -> Path:
        """The configured API token file, or ``api-tokens.json`` in the data directory."""
        return self.api_tokens_file or self.data_dir / "api-tokens.json"
