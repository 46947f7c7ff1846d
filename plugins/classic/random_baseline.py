"""``random``: uniformly random scores; the floor every method must clear."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench import hookimpl
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class RandomConfig:
    """No options: the method's seed sets the random stream."""


class RandomMethod(ScoringMethod):
    name = "random"
    description = "Uniformly random ranking (seeded); the floor for every task"
    Config = RandomConfig
    candidate_tables = frozenset({"items", "artworks"})

    def fit(self, data: FitData) -> None:
        super().fit(data)
        self._rng = np.random.default_rng(self.seed)

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._rng.random((len(examples), self.catalog.n_items))

    def score_candidates(self, examples: ExampleSet) -> np.ndarray:
        return self._rng.random(examples.candidates.shape)


@hookimpl
def recbench_register_methods(register):
    register(RandomMethod)
