"""``als``: implicit-feedback matrix factorization by alternating least squares (Hu, Koren and
Volinsky, ICDM 2008), trained with the ``implicit`` library's CPU solver.

An observed interaction has confidence ``alpha`` (implicit 0.7 weighs the binary matrix by
``alpha``), every other pair confidence 1 towards 0. At prediction time a user's factors are
recomputed by the exact least-squares solve against the fitted item factors from the example's
own history (``recalculate_user``), so validation items in a test history count and users
unseen in training are scored with no special case.

Each hyper-parameter field lists the values tried; every combination is fitted on the training
interactions, the one with the best validation NDCG@10 (``recbench.fitting.validation_ndcg``) is
refitted on training plus validation targets. The default grid (factors 32 or 64; alpha 1, 10 or
40: implicit's default, between, and the paper's; regularization 0.1; 15 sweeps) is 6 fits of
about 1 s each on ML-100K; 128 factors would double the time of the exact per-user solve at
prediction (about 1.5 s for ML-100K's 943 users on 2 busy cores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData
from recbench.fitting import grid_settings, history_matrix, interaction_matrix, select_on_validation, with_validation_targets
from recbench.method import ScoringMethod

TUNED = ("factors", "regularization", "alpha", "iterations")


@dataclass(frozen=True)
class ALSConfig:
    """ALS options; each tuple lists the values tried (one value fixes it)."""

    factors: tuple[int, ...] = option((32, 64), "latent dimensions tried")
    regularization: tuple[float, ...] = option((0.1,), "L2 penalty on user and item factors, values tried")
    alpha: tuple[float, ...] = option((1.0, 10.0, 40.0), "confidence of an observed interaction, values tried")
    iterations: tuple[int, ...] = option((15,), "ALS sweeps (users then items), values tried")
    refit_with_validation: bool = option(True, "after choosing, refit on training plus validation targets")
    num_threads: int = option(1, "threads of implicit's solver (more help only on idle cores); factors do not change")

    def __post_init__(self) -> None:
        for name in TUNED:
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise ConfigError(f"als: {name} needs at least one value, all positive; got {getattr(self, name)}.")
        if self.num_threads < 1:
            raise ConfigError(f"als: num_threads must be at least 1; got {self.num_threads}.")


class ALS(ScoringMethod):
    name = "als"
    description = "Implicit ALS (Hu et al. 2008, implicit library); user factors solved from each example's history"
    Config = ALSConfig

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
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit runs its own threads and warns that a BLAS pool on top of them slows training
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(**setting, num_threads=self.config.num_threads, random_state=self.seed)
            model.fit(matrix, show_progress=False)
        return model

    def score(self, examples: ExampleSet) -> np.ndarray:
        history = history_matrix(examples, self.catalog.n_items)
        users = self._model.recalculate_user(np.arange(len(examples)), history)
        return users @ self._model.item_factors.T

    def describe(self) -> dict:
        return {
            "chosen": self.chosen, "validation": self.validation,
            "refit_with_validation": self.config.refit_with_validation,
        }


@hookimpl
def recbench_register_methods(register):
    register(ALS)
