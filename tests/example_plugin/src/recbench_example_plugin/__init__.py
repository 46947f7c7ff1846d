"""Two example methods: ``cooccurrence`` (items that follow the user's most recent items in training) and
``grpo_brief`` (GRPO with a custom reward, see ``brief.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from recbench import hookimpl
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod
from recbench_example_plugin.brief import BriefGRPO, brevity  # an LLM recipe with a custom reward


@dataclass(frozen=True)
class CooccurrenceConfig:
    window: int = field(default=3, metadata={"doc": "how many of the most recent history items vote"})
    decay: float = field(default=0.5, metadata={"doc": "weight multiplier per step back in the history"})


class Cooccurrence(ScoringMethod):
    name = "cooccurrence"
    description = "Items that followed the user's last items in training sequences (example plugin)"
    Config = CooccurrenceConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        train = data.train  # sorted by user, then time, then recbench's fixed tie rule
        user = train["user"].to_numpy()
        item = train["item"].to_numpy()
        same_user = user[1:] == user[:-1]
        n = data.catalog.n_items
        self._next = sparse.csr_matrix(
            (np.ones(same_user.sum()), (item[:-1][same_user], item[1:][same_user])), shape=(n, n)
        )
        self._popularity = np.bincount(item, minlength=n) / max(1, len(item))

    def score(self, examples: ExampleSet) -> np.ndarray:
        scores = np.tile(self._popularity * 1e-3, (len(examples), 1))
        for row in range(len(examples)):
            recent = examples.histories.items_of(row)[::-1][: self.config.window]
            weights = self.config.decay ** np.arange(len(recent))
            if len(recent):
                scores[row] += np.asarray(self._next[recent].T @ weights).ravel()
        return scores


@hookimpl
def recbench_register_methods(register):
    register(Cooccurrence)
    register(BriefGRPO)


@hookimpl
def recbench_register_rewards(register):
    register("brevity", brevity)

