"""``most_chosen``: for each title, the artwork engaged with most often in training.

Options are ranked by their training engagement count; ties, and titles never seen in training,
are broken uniformly at random (seeded), so on an unseen title it is the ``random`` baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.contracts import CANDIDATES
from recbench.errors import UnsupportedTaskError
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class MostChosenConfig:
    include_validation: bool = option(True, "also count the validation examples' engagements")


class MostChosen(ScoringMethod):
    name = "most_chosen"
    description = "Per title, the artwork most often engaged with in training (random among ties and unseen titles)"
    Config = MostChosenConfig
    contracts = frozenset({CANDIDATES})
    candidate_tables = frozenset({"artworks"})

    def fit(self, data: FitData) -> None:
        super().fit(data)
        if data.train_targets is None or "artworks" not in data.catalog.tables:
            raise UnsupportedTaskError(
                f"method {self.name!r} counts engagements with the artworks of a side table; the task gave no "
                "labelled train examples or no 'artworks' table. Run it on the artwork task."
            )
        n_codes = len(data.catalog.tables["artworks"])
        chosen = [data.train_targets.items]
        if self.config.include_validation:
            chosen.append(data.valid_targets.items)
        self._counts = np.bincount(np.concatenate(chosen), minlength=n_codes).astype(np.float64)
        self._rng = np.random.default_rng(self.seed)

    def score_candidates(self, examples: ExampleSet) -> np.ndarray:
        counts = self._counts[np.maximum(examples.candidates, 0)]
        # a uniform draw in [0, 1) below the integer counts only reorders ties
        return counts + self._rng.random(counts.shape)

    def score(self, examples: ExampleSet) -> np.ndarray:
        raise NotImplementedError(f"{self.name} ranks a title's artworks only (score_candidates).")

    def describe(self) -> dict:
        return {"engagements_counted": int(self._counts.sum()), "artworks_ever_chosen": int((self._counts > 0).sum())}


@hookimpl
def recbench_register_methods(register):
    register(MostChosen)
