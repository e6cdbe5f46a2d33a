"""Case-level bootstrap confidence intervals for figures measured on few cases.

Tiles of one case are not independent: a test split of 118 cases with 4 serrated-adenoma
cases moves a class recall by a quarter when one case flips. Resampling whole cases (not
tiles) with replacement gives an interval that reflects that, as is usual for patient-level
medical test sets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import bootstrap

N_RESAMPLES = 2000
CONFIDENCE = 0.95


def case_bootstrap_ci(statistic: Callable[[np.ndarray], float], cases: np.ndarray, *,
                      n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(rows)`` when whole cases are drawn with replacement.

    Args:
        statistic: Maps row indices (repeats allowed) into the evaluated items to a figure.
        cases: ``[n]`` case id of each item.
        n_resamples: Number of bootstrap resamples.
        confidence: Two-sided confidence level.
        seed: Seed of the resampling, so a report is reproducible.

    Returns:
        ``(low, high)``; ``(nan, nan)`` with fewer than two cases, where no interval exists.
    """
    unique, inverse = np.unique(np.asarray(cases), return_inverse=True)
    if len(unique) < 2:
        return float("nan"), float("nan")
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])

    def on_cases(case_index: np.ndarray) -> float:
        return statistic(np.concatenate([members[i] for i in case_index]))

    result = bootstrap((np.arange(len(unique)),), on_cases, n_resamples=n_resamples,
                       vectorized=False, method="percentile", confidence_level=confidence,
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def balanced_accuracy_on(labels: np.ndarray, correct: np.ndarray) -> Callable[[np.ndarray], float]:
    """Statistic for ``case_bootstrap_ci``: mean per-class recall over the classes drawn."""
    labels = np.asarray(labels)
    correct = np.asarray(correct, dtype=float)

    def statistic(rows: np.ndarray) -> float:
        drawn = labels[rows]
        hits = correct[rows]
        return float(np.mean([hits[drawn == c].mean() for c in np.unique(drawn)]))

    return statistic


def mean_on(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """Statistic for ``case_bootstrap_ci``: the mean of a per-item figure (e.g. hit or miss)."""
    values = np.asarray(values, dtype=float)
    return lambda rows: float(values[rows].mean())


def format_interval(bounds: list[float] | tuple[float, float]) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def ci_note(intervals: dict[str, list[float]], cases: np.ndarray, who: str = "") -> str:
    """One report line naming each figure's case-bootstrap interval."""
    parts = ", ".join(f"{name} {format_interval(bounds)}" for name, bounds in intervals.items())
    return (f"{who}95% intervals from a bootstrap over the {len(np.unique(cases))} cases "
            f"(source_id, {N_RESAMPLES} resamples): {parts}.")
