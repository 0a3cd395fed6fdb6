from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class N:
    key: str
    weight: int = 1


def nodes(*weights: int) -> list[N]:
    return [N(chr(ord("a") + i), w) for i, w in enumerate(weights)]
