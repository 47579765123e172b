"""How an upstream's session is kept alive: health checks, tool-list refreshes, reconnects with backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import GatewaySettings


@dataclass(frozen=True)
class Resilience:
    """How an upstream's session is kept alive (the `[gateway]` keys of the same names)."""

    health_interval_s: float
    refresh_interval_s: float
    reconnect_initial_s: float
    reconnect_max_s: float
    connect_timeout_s: float
    reconnect: bool = True

    @classmethod
    def of(cls, settings: GatewaySettings, *, once: bool = False) -> Resilience:
        """From the config; `once` makes one connection attempt with no health checks (for `check`)."""
        if once:
            return cls(0, 0, settings.reconnect_initial_s, settings.reconnect_max_s, settings.connect_timeout_s,
                       reconnect=False)
        return cls(settings.health_interval_s, settings.refresh_interval_s, settings.reconnect_initial_s,
                   settings.reconnect_max_s, settings.connect_timeout_s)

    def backoff(self, attempt: int) -> float:
        """Exponential in the number of failures in a row, with jitter so upstreams do not retry in step."""
        ceiling = min(self.reconnect_max_s, self.reconnect_initial_s * 2.0 ** min(attempt, 30))
        return ceiling * random.uniform(0.5, 1.0)
