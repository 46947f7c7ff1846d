"""Standardized splits over a catalog's interactions (sorted by user, then the tie rule).

- :func:`leave_one_out`: per user, the last interaction is the test target and the one before
  it the validation target; users with fewer than ``min_interactions`` stay in training only.
- :func:`user_random_split`: users shuffled into train/validation/test groups by fractions.
- :func:`global_temporal_split`: one or two global time cuts.

"Last" follows the catalog's tie rule (timestamp, then a fixed hash of user and item; see
:mod:`recbench.data.catalog`), so equal timestamps never make a split depend on file order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbench.examples import Histories


@dataclass(frozen=True)
class UserSequences:
    """Each user's interactions as one contiguous run of the sorted frame."""

    users: np.ndarray  # user codes with at least one interaction, ascending
    starts: np.ndarray  # row of each user's first interaction
    lengths: np.ndarray
    frame: pd.DataFrame

    @classmethod
    def of(cls, interactions: pd.DataFrame) -> UserSequences:
        user = interactions["user"].to_numpy()
        if len(user) and np.any(user[1:] < user[:-1]):
            raise ValueError("interactions must be sorted by user (use recbench.data.catalog.sort_interactions)")
        users, starts, lengths = np.unique(user, return_index=True, return_counts=True)
        return cls(users.astype(np.int32), starts.astype(np.int64), lengths.astype(np.int64), interactions)

    def histories(self, starts: np.ndarray, lengths: np.ndarray) -> Histories:
        """CSR histories of frame rows ``[starts[i], starts[i] + lengths[i])``."""
        lengths = np.asarray(lengths, dtype=np.int64)
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(np.asarray(starts, np.int64) - indptr[:-1], lengths) + np.arange(indptr[-1])
        f = self.frame
        return Histories(
            indptr,
            f["item"].to_numpy(np.int32)[positions],
            f["timestamp"].to_numpy(np.int64)[positions],
            f["rating"].to_numpy(np.float32)[positions],
        )


@dataclass(frozen=True)
class LeaveOneOut:
    train: pd.DataFrame
    users: np.ndarray  # evaluated users
    valid_rows: np.ndarray  # frame row of each evaluated user's validation target
    test_rows: np.ndarray  # frame row of each evaluated user's test target
    sequences: UserSequences
    n_train_only_users: int


def leave_one_out(interactions: pd.DataFrame, min_interactions: int = 3) -> LeaveOneOut:
    seqs = UserSequences.of(interactions)
    keep = seqs.lengths >= min_interactions
    test_rows = (seqs.starts + seqs.lengths - 1)[keep]
    valid_rows = test_rows - 1
    held = np.zeros(len(interactions), dtype=bool)
    held[test_rows] = True
    held[valid_rows] = True
    train = interactions[~held].reset_index(drop=True)
    return LeaveOneOut(train, seqs.users[keep], valid_rows, test_rows, seqs, int((~keep).sum()))


def user_random_split(users: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Shuffle ``users`` with ``seed`` and cut into groups of the given fractions (summing to 1)."""
    fractions = tuple(float(f) for f in fractions)
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(np.asarray(users))
    cuts = np.round(np.cumsum(fractions)[:-1] * len(order)).astype(int)
    return [np.sort(group) for group in np.split(order, cuts)]


def global_temporal_split(interactions: pd.DataFrame, cuts: tuple[float, ...]) -> list[pd.DataFrame]:
    """Split at global time quantiles ``cuts`` (e.g. ``(0.8, 0.9)`` -> train/valid/test by time).

    Interactions with a timestamp equal to a cut go to the later part.
    """
    times = np.quantile(interactions["timestamp"].to_numpy(), cuts, method="lower")
    bins = np.searchsorted(times, interactions["timestamp"].to_numpy(), side="right")
    return [interactions[bins == i].reset_index(drop=True) for i in range(len(cuts) + 1)]
