"""Small vectorized array helpers shared by tasks, contracts and metrics."""

from __future__ import annotations

import numpy as np


def sorted_contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_keys)`` for an ascending ``sorted_keys``, by binary search.

    numpy's ``isin``/``unique`` re-sort or hash the keys on every call; sorting once and
    searching is what makes negative sampling and seen-item checks fast at ML-1M scale.
    """
    values = np.asarray(values)
    if len(sorted_keys) == 0:
        return np.zeros(values.shape, dtype=bool)
    found = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[found] == values


def concatenated_ranges(lengths: np.ndarray) -> np.ndarray:
    """``[0..l0), [0..l1), ...`` concatenated into one array."""
    lengths = np.asarray(lengths, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
