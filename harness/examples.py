"""What flows between a task, a method and the runner.

A task turns a catalog into :class:`FitData` (what a method may learn from) and an
:class:`ExampleSet` of test inputs. The targets of those inputs are a separate :class:`Targets`
object that only the runner holds: no field of anything a method receives points at them.
A method answers an :class:`ExampleSet` with :class:`Predictions`.

Histories and targets are stored as CSR arrays (``indptr`` plus flat values) so that batches
are slices, not Python lists of lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def _csr_indptr(lengths: np.ndarray) -> np.ndarray:
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return indptr


@dataclass(frozen=True)
class Histories:
    """Per-example interaction histories, oldest first, in CSR layout."""

    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray

    @classmethod
    def from_lists(
        cls,
        items: Sequence[Sequence[int]],
        timestamps: Sequence[Sequence[int]] | None = None,
        ratings: Sequence[Sequence[float]] | None = None,
    ) -> Histories:
        lengths = np.array([len(row) for row in items], dtype=np.int64)
        flat = lambda rows, dtype: (  # noqa: E731
            np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if len(rows) else np.zeros(0, dtype)
        )
        flat_items = flat(items, np.int32)
        flat_ts = flat(timestamps, np.int64) if timestamps is not None else np.zeros(len(flat_items), np.int64)
        flat_r = flat(ratings, np.float32) if ratings is not None else np.full(len(flat_items), np.nan, np.float32)
        return cls(_csr_indptr(lengths), flat_items, flat_ts, flat_r)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def items_of(self, i: int) -> np.ndarray:
        return self.items[self.indptr[i] : self.indptr[i + 1]]

    def timestamps_of(self, i: int) -> np.ndarray:
        return self.timestamps[self.indptr[i] : self.indptr[i + 1]]

    def ratings_of(self, i: int) -> np.ndarray:
        return self.ratings[self.indptr[i] : self.indptr[i + 1]]

    def row_ids(self) -> np.ndarray:
        """For each flat position, the example row it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, rows: np.ndarray) -> Histories:
        rows = np.asarray(rows, dtype=np.int64)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        if len(rows) and np.all(rows[1:] == rows[:-1] + 1):  # contiguous: a slice, no copy
            sl = slice(int(starts[0]), int(stops[-1]))
            return Histories(_csr_indptr(lengths), self.items[sl], self.timestamps[sl], self.ratings[sl])
        positions = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) if len(rows) else np.zeros(0, np.int64)
        )
        return Histories(
            _csr_indptr(lengths), self.items[positions], self.timestamps[positions], self.ratings[positions]
        )


@dataclass(frozen=True)
class Targets:
    """The held-out items of each example (one or more), in CSR layout. Only the runner holds these."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def single(cls, items: np.ndarray) -> Targets:
        items = np.asarray(items, dtype=np.int32)
        return cls(np.arange(len(items) + 1, dtype=np.int64), items)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> Targets:
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        items = np.concatenate([np.asarray(r, np.int32) for r in rows]) if len(rows) else np.zeros(0, np.int32)
        return cls(_csr_indptr(lengths), items)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def items_of(self, i: int) -> np.ndarray:
        return self.items[self.indptr[i] : self.indptr[i + 1]]

    def take(self, rows: np.ndarray) -> Targets:
        h = Histories(self.indptr, self.items, np.zeros(len(self.items), np.int64), np.zeros(len(self.items), np.float32))
        sub = h.take(rows)
        return Targets(sub.indptr, sub.items)


@dataclass(frozen=True)
class ExampleSet:
    """Inputs of a batch of examples: who asks, with which history, at what time, among which candidates.

    ``candidates`` is ``None`` for full-catalog and generation tasks and an ``(n, c)`` array of
    candidate codes for candidate tasks (item codes, or rows of a side table the task names, such
    as artworks); rows with fewer than ``c`` candidates are padded at the end with ``-1``. ``as_of`` is the Unix time at which the recommendation is requested.
    ``attributes`` holds task-specific per-example inputs (for example a release-date cutoff).
    """

    keys: np.ndarray
    users: np.ndarray
    histories: Histories
    as_of: np.ndarray
    candidates: np.ndarray | None = None
    attributes: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        for name, size in (("users", len(self.users)), ("histories", len(self.histories)), ("as_of", len(self.as_of))):
            if size != n:
                raise ValueError(f"ExampleSet.{name} has {size} rows but keys has {n}")
        if self.candidates is not None and len(self.candidates) != n:
            raise ValueError(f"ExampleSet.candidates has {len(self.candidates)} rows but keys has {n}")
        if self.attributes is not None and len(self.attributes) != n:
            raise ValueError(f"ExampleSet.attributes has {len(self.attributes)} rows but keys has {n}")

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, rows: np.ndarray | slice) -> ExampleSet:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        rows = np.asarray(rows, dtype=np.int64)
        return ExampleSet(
            keys=self.keys[rows],
            users=self.users[rows],
            histories=self.histories.take(rows),
            as_of=self.as_of[rows],
            candidates=None if self.candidates is None else self.candidates[rows],
            attributes=None if self.attributes is None else self.attributes.iloc[rows].reset_index(drop=True),
        )

    def batches(self, size: int) -> Iterator[tuple[int, ExampleSet]]:
        """Yield ``(start, batch)`` pairs of at most ``size`` examples, in order."""
        for start in range(0, len(self), size):
            yield start, self.take(slice(start, start + size))


@dataclass(frozen=True)
class CatalogView:
    """What a method may know about the catalog: item and user metadata, never interactions.

    ``tables`` holds the catalog's side tables (for example ``artworks``: the caption of each
    artwork code a candidate list may name).
    """

    name: str
    items: pd.DataFrame
    users: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class FitData:
    """Everything a method may learn from.

    ``train`` holds interactions (columns ``user, item, timestamp, rating``, integer codes). The
    validation examples come with their targets, for early stopping and tuning. Tasks whose
    training signal is not plain interactions (the artwork task's user-title-artwork choices)
    also give labelled ``train_examples``. ``llm`` is the task kind's LLM interface
    (:mod:`recbench.llm.interface`): how to prompt for an example and read a reply.
    """

    catalog: CatalogView
    train: pd.DataFrame
    valid: ExampleSet
    valid_targets: Targets
    train_examples: ExampleSet | None = None
    train_targets: Targets | None = None
    llm: Any = None  # the task's LLM interface (recbench.llm.interface.TaskInterface), for LLM methods


@dataclass
class Predictions:
    """A method's answer to an :class:`ExampleSet`, one row per example.

    ``items``: ``(n, k)`` item codes, best first, ``-1`` for "no item" (allowed only where the
    contract says so). ``scores``: optional ``(n, k)`` scores aligned with ``items``. ``texts``:
    for generation contracts, the generated titles of each example (grounded to the catalog by
    the task). ``extras``: optional per-example JSON-serializable details written beside results.
    ``diagnostics``: optional run-level numbers (for example a valid-output rate).
    """

    items: np.ndarray | None = None
    scores: np.ndarray | None = None
    texts: list[list[str]] | None = None
    extras: list[dict[str, Any]] | None = None
    diagnostics: dict[str, float] = field(default_factory=dict)
