"""``most_popular``: rank items by their number of training interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class MostPopularConfig:
    min_rating: float | None = option(None, "count only interactions rated at least this (None: count all)")


class MostPopular(ScoringMethod):
    name = "most_popular"
    description = "Items ranked by training interaction count; the same list for every user"
    Config = MostPopularConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        train = data.train
        if self.config.min_rating is not None:
            train = train[train["rating"] >= self.config.min_rating]
        counts = np.bincount(train["item"].to_numpy(), minlength=data.catalog.n_items).astype(np.float64)
        # ties broken towards lower item codes by a tiny decreasing offset, for a stable order
        self._popularity = counts - np.arange(len(counts)) * 1e-9

    def score(self, examples: ExampleSet) -> np.ndarray:
        return np.broadcast_to(self._popularity, (len(examples), len(self._popularity)))

    def describe(self) -> dict:
        return {"top_items": np.argsort(-self._popularity)[:10].tolist()}


@hookimpl
def recbench_register_methods(register):
    register(MostPopular)
