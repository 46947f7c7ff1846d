"""``bpr``: matrix factorization trained with Bayesian Personalized Ranking (Rendle et al., UAI
2009) by the ``implicit`` library's CPU SGD.

Scores are the fitted user factors times the item factors (implicit appends an item bias and a
constant user column). User codes are the catalog's, stable between fit and prediction, so a
user is scored with the factors learned from their training interactions: history items that
arrived after training (the validation item of a test example when ``refit_with_validation`` is
off) do not move them. A user with no training interaction has a zero factor vector and is
ranked by item bias alone.

implicit's multi-threaded SGD updates shared factors without locks, so two runs with the same
seed differ; training uses one thread to keep the seed's promise.

Each hyper-parameter field lists the values tried; every combination is fitted on the training
interactions, the one with the best validation NDCG@10 (``recbench.fitting.validation_ndcg``) is
refitted on training plus validation targets. The default grid (factors 32 or 64,
regularization 0.003 or 0.01; learning rate 0.01, 100 epochs) is 4 fits of about 3 s each on
ML-100K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData
from recbench.fitting import grid_settings, interaction_matrix, select_on_validation, with_validation_targets
from recbench.method import ScoringMethod

TUNED = ("factors", "learning_rate", "regularization", "iterations")


@dataclass(frozen=True)
class BPRConfig:
    """BPR options; each tuple lists the values tried (one value fixes it)."""

    factors: tuple[int, ...] = option((32, 64), "latent dimensions tried (an item bias is added)")
    learning_rate: tuple[float, ...] = option((0.01,), "SGD step size, values tried")
    regularization: tuple[float, ...] = option((0.003, 0.01), "L2 penalty on factors, values tried")
    iterations: tuple[int, ...] = option((100,), "epochs (each samples as many triples as interactions), values tried")
    refit_with_validation: bool = option(True, "after choosing, refit on training plus validation targets")

    def __post_init__(self) -> None:
        for name in TUNED:
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise ConfigError(f"bpr: {name} needs at least one value, all positive; got {getattr(self, name)}.")


class BPR(ScoringMethod):
    name = "bpr"
    description = "MF-BPR (Rendle et al. 2009, implicit library); fitted user factors, grid tuned on validation"
    Config = BPRConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        settings = grid_settings(self.config, TUNED)
        train = self._matrix(data.train)
        self.chosen, self.validation = select_on_validation(
            self.name, settings, data, lambda setting: setattr(self, "_model", self._train(train, setting)), self.score
        )
        final = with_validation_targets(data) if self.config.refit_with_validation else data.train
        self._model = self._train(self._matrix(final), self.chosen)

    def _matrix(self, train):
        return interaction_matrix(train, self.catalog.n_users, self.catalog.n_items)

    def _train(self, matrix, setting: dict):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(**setting, num_threads=1, random_state=self.seed)
        model.fit(matrix, show_progress=False)
        return model

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._model.user_factors[examples.users] @ self._model.item_factors.T

    def describe(self) -> dict:
        return {
            "chosen": self.chosen, "validation": self.validation,
            "refit_with_validation": self.config.refit_with_validation,
        }


@hookimpl
def recbench_register_methods(register):
    register(BPR)
