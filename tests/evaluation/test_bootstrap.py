"""Case-level bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from histoseek.evaluation.bootstrap import (
    balanced_accuracy_on,
    case_bootstrap_ci,
    ci_note,
    mean_on,
)


def _data(n_cases: int, per_case: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    cases = np.repeat(np.arange(n_cases), per_case)
    labels = np.repeat(rng.integers(0, 3, n_cases), per_case)
    # whole cases right or wrong, as tiles of one case tend to be
    correct = np.repeat(rng.random(n_cases) < 0.7, per_case)
    return cases, labels, correct


def test_interval_brackets_the_estimate_and_is_reproducible() -> None:
    cases, labels, correct = _data(60, 5)
    statistic = balanced_accuracy_on(labels, correct)
    estimate = statistic(np.arange(len(cases)))
    low, high = case_bootstrap_ci(statistic, cases, n_resamples=500, seed=1)
    assert low < estimate < high
    assert (low, high) == case_bootstrap_ci(statistic, cases, n_resamples=500, seed=1)
    assert (low, high) != case_bootstrap_ci(statistic, cases, n_resamples=500, seed=2)


def test_balanced_accuracy_statistic_matches_scikit_learn() -> None:
    _, labels, correct = _data(40, 3)
    predicted = np.where(correct, labels, (labels + 1) % 3)
    rows = np.arange(len(labels))
    assert balanced_accuracy_on(labels, correct)(rows) == pytest.approx(
        balanced_accuracy_score(labels, predicted))


def test_resampling_cases_not_tiles_widens_the_interval() -> None:
    """Tiles of a case move together; treating them as independent understates doubt."""
    cases, _, correct = _data(20, 10)
    per_case = case_bootstrap_ci(mean_on(correct), cases, n_resamples=1000)
    per_tile = case_bootstrap_ci(mean_on(correct), np.arange(len(cases)), n_resamples=1000)
    assert per_case[1] - per_case[0] > 2 * (per_tile[1] - per_tile[0])


def test_one_case_has_no_interval() -> None:
    low, high = case_bootstrap_ci(mean_on(np.array([1.0, 0.0])), np.array(["a", "a"]))
    assert math.isnan(low) and math.isnan(high)


def test_note_names_cases_and_figures() -> None:
    note = ci_note({"R@1": [0.5, 0.75]}, np.array(["a", "b", "b"]), "enc: ")
    assert note.startswith("enc: 95% intervals") and "2 cases" in note
    assert "R@1 [0.500, 0.750]" in note
