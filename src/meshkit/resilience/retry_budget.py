"""Retry budget (gRPC's retry throttling, A6): retries spend tokens that successes earn back.

The bucket holds at most ``max_tokens`` (10); each failure costs 1, each success adds ``ratio``
(0.1); retries are allowed only while more than half the tokens remain. When a backend fails
everything, the tokens drain after a handful of failures and retries stop, so retries can never
multiply an outage by more than a small factor.
"""

from __future__ import annotations


class RetryBudget:
    __slots__ = ("_tokens", "max_tokens", "ratio")

    def __init__(self, max_tokens: float = 10.0, ratio: float = 0.1) -> None:
        if max_tokens <= 0 or ratio <= 0:
            raise ValueError(f"max_tokens and ratio must be > 0, got {max_tokens}, {ratio}")
        self.max_tokens = max_tokens
        self.ratio = ratio
        self._tokens = max_tokens

    @property
    def tokens(self) -> float:
        return self._tokens

    def on_success(self) -> None:
        self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def on_failure(self) -> None:
        self._tokens = max(0.0, self._tokens - 1)

    def can_retry(self) -> bool:
        return self._tokens > self.max_tokens / 2
