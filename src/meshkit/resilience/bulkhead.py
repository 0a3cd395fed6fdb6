"""Bulkhead: at most ``max_concurrent`` calls of one method at a time, the rest refused at once.

A slow method that piles up calls then cannot take every slot (and all the memory) of the
process; the other methods keep being served. Pure counting, no waiting: a caller that is refused
is told so immediately and may go elsewhere.
"""

from __future__ import annotations


class Bulkhead:
    __slots__ = ("in_flight", "max_concurrent", "rejected")

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.rejected = 0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.max_concurrent:
            self.rejected += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1
