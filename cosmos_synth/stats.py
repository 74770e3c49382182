"""Intervals for the success rates every evaluation reports."""

from __future__ import annotations


def wilson_interval(successes: int, trials: int) -> list[float]:
    """The 95% Wilson score interval of a success rate (scipy)."""
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]
