"""Restate's invocation retry policy, pure: exponential back-off without jitter, then pause or kill."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval_ms: int = 500
    exponentiation_factor: float = 2.0
    max_interval_ms: int = 60_000
    max_attempts: int | None = 70  # None: unlimited
    on_max_attempts: str = "pause"  # "pause" | "kill"

    def delay_ms(self, failed_attempts: int) -> int | None:
        """Delay before the next attempt after `failed_attempts` consecutive failures (>= 1);
        None once the attempts are exhausted."""
        if self.max_attempts is not None and failed_attempts >= self.max_attempts:
            return None
        delay = self.initial_interval_ms * self.exponentiation_factor ** max(0, failed_attempts - 1)
        return int(min(delay, self.max_interval_ms))

    def merged(
        self,
        *,
        initial_interval_ms: int | None = None,
        exponentiation_factor: float | None = None,
        max_interval_ms: int | None = None,
        max_attempts: int | None = None,
        on_max_attempts: str | None = None,
    ) -> RetryPolicy:
        """This policy with the given overrides (None keeps the current value)."""
        return RetryPolicy(
            initial_interval_ms if initial_interval_ms is not None else self.initial_interval_ms,
            exponentiation_factor if exponentiation_factor is not None else self.exponentiation_factor,
            max_interval_ms if max_interval_ms is not None else self.max_interval_ms,
            max_attempts if max_attempts is not None else self.max_attempts,
            on_max_attempts.lower() if on_max_attempts is not None else self.on_max_attempts,
        )
