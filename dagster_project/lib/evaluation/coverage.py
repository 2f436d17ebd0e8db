"""Counting how often intervals cover a known truth and how often a test is called
significant: the logic benchmarks/campaign_effects.py reports (target: coverage near 95 %,
false positives of a no-effect campaign at most 5 %)."""

from __future__ import annotations

from dataclasses import dataclass, field


def covers(
    low: float | None, high: float | None, truth: float, tolerance: float = 1e-9
) -> bool | None:
    """Whether [low, high] holds the truth (None without an interval). The tolerance absorbs
    rounding when an interval collapses onto an exact truth (no variance in either arm)."""
    if low is None or high is None:
        return None
    return low - tolerance <= truth <= high + tolerance


@dataclass
class IntervalTally:
    """Coverage, significance and interval widths over many estimates."""

    intervals: int = 0
    covered: int = 0
    significant: int = 0
    widths: list[float] = field(default_factory=list)

    def add(
        self, covered: bool | None, significant: bool | None, width: float | None = None
    ) -> None:
        if covered is None:
            return
        self.intervals += 1
        self.covered += int(covered)
        self.significant += int(bool(significant))
        if width is not None:
            self.widths.append(width)

    @property
    def coverage(self) -> float:
        return self.covered / self.intervals if self.intervals else float("nan")

    @property
    def significant_share(self) -> float:
        return self.significant / self.intervals if self.intervals else float("nan")
