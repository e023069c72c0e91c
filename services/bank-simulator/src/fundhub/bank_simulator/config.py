"""The simulator's own options (CLI flags); shared ones come from ``fundhub.common.config``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fundhub.bank_simulator.notifications import DEFAULT_APP_ID


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    gateway_url: str
    private_key_pem: str = field(repr=False)
    app_id: str = DEFAULT_APP_ID
    retries: int = 3
    retry_interval_s: float = 180.0
    timeout_s: float = 10.0
    max_connections: int = 100
    # > 0: send one demo arrival every this many seconds (see ``scenarios.DemoFeed``).
    stream_interval_s: float = 0.0
    stream_accounts: int = 3
