"""The simulator's own options (CLI flags); shared ones come from ``fundhub.common.config``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from fundhub.bank_simulator.notifications import DEFAULT_APP_ID


class DeliveryOptions(TypedDict):
    """How the bank delivers what it sends (notices, payout results): the same for both."""

    retries: int
    retry_interval_s: float
    timeout_s: float
    max_connections: int


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

    def delivery(self) -> DeliveryOptions:
        return DeliveryOptions(
            retries=self.retries,
            retry_interval_s=self.retry_interval_s,
            timeout_s=self.timeout_s,
            max_connections=self.max_connections,
        )
