"""A fixed-bin histogram of frame lateness: O(1) to record, percentiles on demand.

Recording happens for every frame of every stream (25,000 a second at 500 streams), so it must
not allocate or sort; 0.1 ms bins up to 2 s, with one overflow bin, are exact enough for p99.
"""

from __future__ import annotations

BIN_S = 0.0001
BINS = 20_000  # 2 s
_PER_S = round(1 / BIN_S)  # bins a second: a multiply, not a divide, per frame


class LatenessStats:
    def __init__(self) -> None:
        self.counts = [0] * (BINS + 1)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, late_s: float) -> None:
        if late_s < 0.0:
            late_s = 0.0
        index = int(late_s * _PER_S)
        self.counts[index if index < BINS else BINS] += 1
        self.count += 1
        self.total += late_s
        if late_s > self.max:
            self.max = late_s

    def merge(self, other: LatenessStats) -> None:
        for index, value in enumerate(other.counts):
            if value:
                self.counts[index] += value
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        """The lateness (seconds) that `p` percent of frames did not exceed (bin upper edge)."""
        if not self.count:
            return 0.0
        rank = p / 100 * self.count
        seen = 0
        for index, value in enumerate(self.counts):
            seen += value
            if value and seen >= rank:
                return min((index + 1) * BIN_S, self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0
