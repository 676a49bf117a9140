"""The metrics sink: where the domain records what it counts and times.

Implemented on Powertools EMF by the scheduler handler; ``NullMetrics`` records nothing.
"""

from __future__ import annotations

from typing import Protocol


class MetricsSink(Protocol):
    def record(
        self, name: str, value: float, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None: ...


class NullMetrics:
    def record(
        self, name: str, value: float, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None:
        return None
