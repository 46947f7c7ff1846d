"""Methods: what a plugin implements to be benchmarked.

A method is a class with ``name``, ``description``, a typed ``Config`` (frozen dataclass) and the
candidate ``contracts`` it can answer. The runner calls ``fit(FitData)`` once, then
``predict(ExampleSet, Contract)`` on batches of test inputs. It never passes test targets.

Most classic recommenders only need to score items: subclass :class:`ScoringMethod` and
implement ``fit`` and ``score``; it answers every contract (full catalog with seen items
excluded, a fixed candidate list, top-k for generation tasks) with no task-specific code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from recbench.contracts import CANDIDATES, CONTRACT_KINDS, FULL_CATALOG, GENERATION, Contract, check_scores
from recbench.errors import RegistrationError
from recbench.examples import CatalogView, ExampleSet, FitData, Predictions


@dataclasses.dataclass(frozen=True)
class FitSummary:
    """What the runner tells a method about a run's data before it fits: counts only."""

    train_interactions: int
    train_examples: int  # labelled training examples (FitData.train_examples); 0 when the task gives none
    valid_examples: int
    test_examples: int
    n_items: int


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a run as a method plans it: ``units`` of ``unit`` (examples, steps, ...).

    ``seconds_per_unit`` is the method's own estimate (None: it has none) and ``basis`` says where
    it comes from (e.g. "documented: SmolLM2-135M on 2 CPU cores"). ``cost_key`` names what the
    cost depends on (model, device, lengths); the runner records each stage's measured cost under
    it and prefers that measurement to the documented one in later plans. ``phase`` is ``fit`` or
    ``predict``; the one ``predict`` stage is the runner's test loop.
    """

    name: str
    units: int
    unit: str = "ex"
    phase: str = "fit"
    seconds_per_unit: float | None = None
    basis: str = ""
    cost_key: str = ""


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """This method has no options."""


class Method:
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    contracts: ClassVar[frozenset[str]] = frozenset()
    # what candidate codes the method can score: catalog ``items`` and/or side tables like ``artworks``
    candidate_tables: ClassVar[frozenset[str]] = frozenset({"items"})

    def __init__(self, config: Any = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else self.Config()
        self.seed = seed

    @classmethod
    def validate_class(cls) -> None:
        for attr in ("name", "description"):
            if not isinstance(getattr(cls, attr, None), str):
                raise RegistrationError(f"method class {cls.__qualname__} must set a string class attribute {attr!r}.")
        if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise RegistrationError(f"method {cls.name!r}: Config must be a frozen dataclass, got {cls.Config!r}.")
        unknown = set(cls.contracts) - set(CONTRACT_KINDS)
        if not cls.contracts or unknown:
            raise RegistrationError(
                f"method {cls.name!r}: contracts must be a non-empty subset of {CONTRACT_KINDS}, got {sorted(cls.contracts)}."
            )

    def fit(self, data: FitData) -> None:
        """Learn from training interactions and validation examples (with their targets)."""

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Anything the method chose while fitting (e.g. tuned hyper-parameters), stored in results."""
        return {}

    # --- the run's plan (printed before fitting; ``recbench run --plan``) ------------------------

    def stages(self, data: FitSummary) -> list[Stage]:
        """The stages this method will go through, in order; called in the worker before ``fit``.

        Override to show a long fit's parts (teacher generation, training per learning rate, ...)
        and report them with :mod:`recbench.progress` under the same names. Default: one fit stage
        and the test predictions; the runner estimates both from this method's last run here.
        """
        return [Stage("fit", 1, "run", cost_key=f"{self.name}:fit"),
                Stage("predict", data.test_examples, "ex", phase="predict", cost_key=f"{self.name}:predict")]

    def plan_settings(self) -> dict[str, Any]:
        """The settings the plan shows (default: the options set away from their defaults)."""
        config, defaults = self.config, type(self.config)()
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                if getattr(config, f.name) != getattr(defaults, f.name)}


class ScoringMethod(Method):
    """A method that scores every catalog item for an example; the base class answers contracts."""

    contracts: ClassVar[frozenset[str]] = frozenset({FULL_CATALOG, CANDIDATES, GENERATION})
    catalog: CatalogView

    def fit(self, data: FitData) -> None:
        self.catalog = data.catalog

    def score(self, examples: ExampleSet) -> np.ndarray:
        """``(len(examples), n_items)`` float scores, higher is better. Called on one batch at a time."""
        raise NotImplementedError

    def score_candidates(self, examples: ExampleSet) -> np.ndarray:
        """``(n, c)`` scores of each example's candidates; override when cheaper than a full score."""
        assert examples.candidates is not None
        candidates = examples.candidates.astype(np.int64)
        scores = np.take_along_axis(np.asarray(self.score(examples)), np.maximum(candidates, 0), axis=1)
        return np.where(candidates >= 0, scores, -np.inf)

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        if contract.kind == CANDIDATES:
            scores = np.asarray(self.score_candidates(examples), dtype=np.float64)
            check_scores(scores, examples, self.name, "score_candidates()", valid=examples.candidates >= 0)
            scores = np.where(examples.candidates >= 0, scores, -np.inf)  # padding sorts last
            order = np.argsort(-scores, axis=1, kind="stable")
            ranked = np.take_along_axis(scores, order, axis=1)
            return Predictions(
                items=np.take_along_axis(examples.candidates, order, axis=1),
                scores=np.where(np.isfinite(ranked), ranked, 0.0),
            )
        scores = np.array(self.score(examples), dtype=np.float64, copy=True)
        check_scores(scores, examples, self.name, "score()")
        if getattr(contract, "exclude_seen", False) or contract.kind == GENERATION:
            rows = examples.histories.row_ids()
            scores[rows, examples.histories.items] = -np.inf
        return top_k(scores, contract.k)


def top_k(scores: np.ndarray, k: int) -> Predictions:
    """Best ``k`` columns per row, best first (ties broken by lower item code).

    Columns scored ``-inf`` (excluded items) are never returned: when a row has fewer than ``k``
    allowed columns, its tail is padded with item ``-1`` and score ``0``.
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(scores, items, axis=1)
    excluded = np.isneginf(top_scores)
    if excluded.any():
        items = np.where(excluded, -1, items)
        top_scores = np.where(excluded, 0.0, top_scores)
    return Predictions(items=items, scores=top_scores)
