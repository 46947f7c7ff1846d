"""Candidate contracts: what a task lets a method answer, and the check of every answer.

- ``full_catalog``: rank the whole catalog; return ``k`` distinct item codes per example, best
  first, none of them in the example's history when ``exclude_seen``.
- ``candidates``: order the example's fixed candidate list; return a permutation of it.
- ``generation``: return ``k`` item codes (``-1`` allowed for "nothing"), or free-text titles
  that the task grounds to the catalog with rapidfuzz (see :mod:`recbench.grounding`).

:meth:`Contract.validate` turns a method's :class:`~recbench.examples.Predictions` into an
``(n, k)`` array of item codes, or raises :class:`~recbench.errors.PredictionError` naming the
method, the example key and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from recbench.arrays import sorted_contains
from recbench.errors import PredictionError
from recbench.examples import CatalogView, ExampleSet, Predictions

FULL_CATALOG = "full_catalog"
CANDIDATES = "candidates"
GENERATION = "generation"
CONTRACT_KINDS = (FULL_CATALOG, CANDIDATES, GENERATION)


@dataclass(frozen=True)
class Validated:
    """Checked predictions: ranked item codes plus run-level diagnostics and per-example extras."""

    items: np.ndarray
    diagnostics: dict[str, float] = field(default_factory=dict)
    extras: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Contract:
    """``candidate_table`` names what codes refer to: ``items`` or a catalog side table (e.g. ``artworks``)."""

    kind: ClassVar[str]
    k: int

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: v for k, v in self.__dict__.items()}}

    def validate(self, preds: Any, examples: ExampleSet, catalog: CatalogView, method: str) -> Validated:
        raise NotImplementedError

    # shared checks -------------------------------------------------------------------------

    def _fail(self, method: str, examples: ExampleSet, row: int | None, problem: str) -> PredictionError:
        where = f"example {str(examples.keys[row])!r}" if row is not None else f"a batch of {len(examples)} examples"
        return PredictionError(
            f"method {method!r} returned an invalid prediction for {where}: {problem} "
            f"(contract {self.kind!r}, k={self.k}). Fix the method's predict()."
        )

    def _items_array(self, preds: Any, examples: ExampleSet, method: str, width: int) -> np.ndarray:
        if not isinstance(preds, Predictions):
            raise self._fail(method, examples, None, f"predict() must return recbench.Predictions, got {type(preds).__name__}")
        if preds.items is None:
            raise self._fail(method, examples, None, "Predictions.items is None")
        items = np.asarray(preds.items)
        if items.dtype.kind not in "iu":
            raise self._fail(method, examples, None, f"items must be integer item codes, got dtype {items.dtype}")
        if items.shape != (len(examples), width):
            raise self._fail(method, examples, None, f"items has shape {items.shape}, expected {(len(examples), width)}")
        if preds.scores is not None:
            scores = np.asarray(preds.scores, dtype=float)
            if scores.shape != items.shape:
                raise self._fail(method, examples, None, f"scores has shape {scores.shape}, expected {items.shape}")
            bad = ~np.isfinite(scores).all(axis=1)
            if bad.any():
                raise self._fail(method, examples, int(np.argmax(bad)), "scores contain NaN or infinity")
        if preds.extras is not None and len(preds.extras) != len(examples):
            raise self._fail(method, examples, None, f"extras has {len(preds.extras)} rows, expected {len(examples)}")
        return items.astype(np.int64)

    def _check_rows(
        self, items: np.ndarray, examples: ExampleSet, catalog: CatalogView, method: str, allow_empty: bool
    ) -> None:
        valid = items >= 0
        if not allow_empty and not valid.all():
            raise self._fail(method, examples, int(np.argmax(~valid.all(axis=1))), "item code -1 (no item) is not allowed")
        out_of_range = items >= catalog.n_items
        if out_of_range.any() or (items < -1).any():
            row = int(np.argmax((out_of_range | (items < -1)).any(axis=1)))
            raise self._fail(method, examples, row, f"item codes must be in [0, {catalog.n_items}), got {items[row].tolist()}")
        ordered = np.sort(np.where(valid, items, -np.arange(1, items.shape[1] + 1)[None, :] - 1), axis=1)
        dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if dup.any():
            row = int(np.argmax(dup))
            raise self._fail(method, examples, row, f"duplicate items {items[row].tolist()}")


def check_scores(scores: np.ndarray, examples: ExampleSet, method: str, source: str, valid: np.ndarray | None = None) -> None:
    """Scores a method computed (``source``, e.g. ``score()``) must be finite, or ``-inf`` for an item
    the method rules out. NaN would sort arbitrarily and silently turn into dropped or padded
    items, so it is named here, before any ranking. ``valid`` masks the cells that count."""
    bad = np.isnan(scores) | np.isposinf(scores)
    if valid is not None:
        bad &= valid
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        cols = np.flatnonzero(bad[row])
        raise PredictionError(
            f"method {method!r} returned an invalid prediction for example {str(examples.keys[row])!r}: {source} gave "
            f"NaN or +inf in {len(cols)} of {scores.shape[1]} columns (first: column {int(cols[0])}, value "
            f"{scores[row, cols[0]]}). Scores must be finite numbers, or -inf for an item the method rules out; "
            f"fix the method's {source}."
        )


def _seen_mask(items: np.ndarray, examples: ExampleSet) -> np.ndarray:
    """``(n, k)`` bool: whether each predicted item is in that example's history."""
    hist = examples.histories
    rows = hist.row_ids()
    n_items_bound = int(max(items.max(initial=0), hist.items.max(initial=0))) + 2
    seen_keys = np.sort(rows * n_items_bound + hist.items)
    pred_keys = np.arange(len(items))[:, None] * n_items_bound + items
    return sorted_contains(seen_keys, pred_keys) & (items >= 0)


@dataclass(frozen=True)
class FullCatalogContract(Contract):
    kind: ClassVar[str] = FULL_CATALOG
    exclude_seen: bool = True

    def validate(self, preds: Any, examples: ExampleSet, catalog: CatalogView, method: str) -> Validated:
        items = self._items_array(preds, examples, method, self.k)
        self._check_rows(items, examples, catalog, method, allow_empty=True)
        self._check_padding(items, examples, catalog, method)
        if self.exclude_seen:
            seen = _seen_mask(items, examples)
            if seen.any():
                row = int(np.argmax(seen.any(axis=1)))
                raise self._fail(
                    method, examples, row,
                    f"items {items[row][seen[row]].tolist()} are in the user's history; this task excludes seen items",
                )
        return Validated(items, dict(preds.diagnostics), preds.extras)


    def _check_padding(self, items: np.ndarray, examples: ExampleSet, catalog: CatalogView, method: str) -> None:
        """``-1`` may only pad the tail of a row, and only when fewer than ``k`` items are allowed."""
        empty = items < 0
        if not empty.any():
            return
        hist = examples.histories
        unique_seen = np.array([len(np.unique(hist.items_of(r))) for r in range(len(examples))]) if self.exclude_seen else 0
        allowed = catalog.n_items - unique_seen
        n_valid = (~empty).sum(axis=1)
        bad = (n_valid < np.minimum(self.k, allowed)) | (np.diff(empty.astype(np.int8), axis=1) < 0).any(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise self._fail(
                method, examples, row,
                f"items {items[row].tolist()} leave slots empty (-1) although {int(np.broadcast_to(allowed, bad.shape)[row])} "
                "items are allowed; -1 may only pad the end of a row when fewer than k items remain",
            )


@dataclass(frozen=True)
class CandidatesContract(Contract):
    kind: ClassVar[str] = CANDIDATES
    candidate_table: str = "items"
    id_column: str = "item_id"

    def validate(self, preds: Any, examples: ExampleSet, catalog: CatalogView, method: str) -> Validated:
        assert examples.candidates is not None, "candidate tasks must give candidates"
        items = self._items_array(preds, examples, method, examples.candidates.shape[1])
        same = (np.sort(items, axis=1) == np.sort(examples.candidates, axis=1)).all(axis=1)
        if not same.all():
            row = int(np.argmax(~same))
            raise self._fail(
                method, examples, row,
                f"items {items[row].tolist()} are not a permutation of the candidates {examples.candidates[row].tolist()}",
            )
        # a row with fewer candidates is padded with -1; the padding must stay at the end
        misplaced = (np.diff((items < 0).astype(np.int8), axis=1) < 0).any(axis=1)
        if misplaced.any():
            row = int(np.argmax(misplaced))
            raise self._fail(method, examples, row, f"padding (-1) must come after every candidate, got {items[row].tolist()}")
        return Validated(items, dict(preds.diagnostics), preds.extras)


@dataclass(frozen=True)
class GenerationContract(Contract):
    kind: ClassVar[str] = GENERATION
    match_threshold: float = 80.0
    exclude_seen: bool = False

    def validate(self, preds: Any, examples: ExampleSet, catalog: CatalogView, method: str) -> Validated:
        if isinstance(preds, Predictions) and preds.items is None and preds.texts is not None:
            from recbench.grounding import ground_titles

            if len(preds.texts) != len(examples):
                raise self._fail(method, examples, None, f"texts has {len(preds.texts)} rows, expected {len(examples)}")
            grounded = ground_titles(preds.texts, catalog.items, examples, k=self.k, threshold=self.match_threshold)
            diagnostics = {**preds.diagnostics, **grounded.diagnostics}
            extras = grounded.extras if preds.extras is None else [
                {**a, **b} for a, b in zip(preds.extras, grounded.extras)
            ]
            return Validated(grounded.items, diagnostics, extras)
        items = self._items_array(preds, examples, method, self.k)
        self._check_rows(items, examples, catalog, method, allow_empty=True)
        diagnostics = dict(preds.diagnostics)
        diagnostics.setdefault("copied_from_history_rate", float(_seen_mask(items, examples).sum() / max(1, (items >= 0).sum())))
        return Validated(items, diagnostics, preds.extras)
