"""Paired comparisons of two runs on the same examples, and Holm's correction across a table.

Two runs of one protocol score the same test examples, so their per-example values pair up: the
difference of the means is the mean of per-example differences ``d``. Its 95% interval is a
paired percentile bootstrap (examples resampled with replacement, ``d`` kept in pairs) and its
p-value a two-sided paired sign-flip permutation test (under "no difference" each ``d`` is as
likely to carry either sign). Both use fixed seeds, so a re-render gives the same page.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_RESAMPLES = 2000
ALPHA = 0.05


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of per-example differences (row minus reference), its 95% CI and p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    p_holm: float | None = None  # set by holm() across a table's rows

    @property
    def significant(self) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p_value
        return p < ALPHA


def paired_difference(values: np.ndarray, reference: np.ndarray, *, seed: int = 0,
                      n_resamples: int = N_RESAMPLES) -> PairedDifference:
    """Paired bootstrap CI and sign-flip permutation p-value of ``mean(values - reference)``."""
    d = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("no paired examples")
    mean = float(d.mean())
    resamples, signs = _draws(n, seed, n_resamples)
    boot = d[resamples].mean(axis=1)
    flips = signs @ d / n
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    # (1 + count) / (1 + draws): never 0, and exact under the permutation null
    p = (1 + np.count_nonzero(np.abs(flips) >= abs(mean) - 1e-12)) / (1 + n_resamples)
    return PairedDifference(mean, float(low), float(high), float(min(1.0, p)), n)


@lru_cache(maxsize=8)
def _draws(n: int, seed: int, n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap row indices and random signs for ``n`` pairs, drawn once per size: every row of a
    table is tested on the same draws (Holm's correction holds under any dependence)."""
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, n, size=(n_resamples, n), dtype=np.int32 if n < 2**31 else np.int64)
    signs = (rng.integers(0, 2, size=(n_resamples, n), dtype=np.int8) * 2 - 1).astype(np.float64)
    return resamples, signs


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone), in the input order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0
