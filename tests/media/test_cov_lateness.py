"""LatenessStats: the per-frame histogram behind the media lateness percentiles."""

from __future__ import annotations

import pytest

from voice_call.media.lateness import BIN_S, BINS, LatenessStats


def test_empty_stats_report_zero_not_an_error() -> None:
    stats = LatenessStats()
    assert stats.percentile(50) == 0.0
    assert stats.percentile(99) == 0.0
    assert stats.mean == 0.0
    assert stats.max == 0.0


def test_early_frames_count_as_on_time() -> None:
    stats = LatenessStats()
    stats.add(-0.005)  # a frame sent before its slot is not "negative late"
    assert stats.count == 1
    assert stats.counts[0] == 1
    assert stats.total == 0.0
    assert stats.max == 0.0
    assert stats.percentile(100) == 0.0


def test_percentile_is_the_bin_upper_edge_capped_at_the_max() -> None:
    stats = LatenessStats()
    for _ in range(99):
        stats.add(0.00005)  # bin 0
    stats.add(0.0123)  # bin 123
    assert stats.percentile(50) == pytest.approx(BIN_S)
    assert stats.percentile(99) == pytest.approx(BIN_S)
    # the top bin's upper edge (0.0124) is above anything seen: the exact max is reported
    assert stats.percentile(100) == pytest.approx(0.0123)
    assert stats.max == pytest.approx(0.0123)
    assert stats.mean == pytest.approx((99 * 0.00005 + 0.0123) / 100)


def test_lateness_beyond_two_seconds_lands_in_the_overflow_bin() -> None:
    stats = LatenessStats()
    stats.add(2.0)
    stats.add(7.5)
    assert stats.counts[BINS] == 2
    assert sum(stats.counts[:BINS]) == 0
    assert stats.max == 7.5
    # the overflow bin's edge (2.0001 s) is below the max: the edge is what is reported
    assert stats.percentile(50) == pytest.approx((BINS + 1) * BIN_S)


def test_percentile_above_100_falls_back_to_the_max() -> None:
    stats = LatenessStats()
    stats.add(0.0301)
    assert stats.percentile(150) == pytest.approx(0.0301)


def test_merge_adds_counts_totals_and_keeps_the_larger_max() -> None:
    left, right = LatenessStats(), LatenessStats()
    left.add(0.001)
    left.add(0.002)
    right.add(0.5)
    right.add(3.0)
    left.merge(right)
    assert left.count == 4
    assert left.total == pytest.approx(3.503)
    assert left.max == 3.0
    assert left.counts[10] == 1 and left.counts[20] == 1
    assert left.counts[5000] == 1 and left.counts[BINS] == 1
    assert sum(left.counts) == 4
    # the other side is unchanged, and merging an empty one changes nothing
    assert right.count == 2
    left.merge(LatenessStats())
    assert left.count == 4
    assert left.max == 3.0


def test_merge_keeps_own_max_when_larger() -> None:
    left, right = LatenessStats(), LatenessStats()
    left.add(0.9)
    right.add(0.1)
    left.merge(right)
    assert left.max == 0.9
    assert left.percentile(50) == pytest.approx(0.1 + BIN_S)
