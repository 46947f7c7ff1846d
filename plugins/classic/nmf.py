"""``nmf``: non-negative matrix factorization of the binary user-item matrix (scikit-learn ``NMF``,
Frobenius loss, coordinate descent).

Training factorizes ``X ≈ W H``. At prediction time an example's user vector is folded in from
its own history with ``NMF.transform`` (``H`` fixed), so validation items in a test history count
and users unseen in training need no special case; scores are ``W_history @ H``.

Each hyper-parameter field lists the values tried; every combination is fitted on the training
interactions, the one with the best validation NDCG@10 (``recbench.fitting.validation_ndcg``) is
refitted on training plus validation targets. The default grid (16, 32 or 64 components, alpha_W
0 or 0.001, no L1) is 6 fits of 1 to 6 s each on ML-100K. On such data the solver stops at
``max_iter`` sweeps before scikit-learn's tolerance; the sweeps run are recorded.
"""

from __future__ import annotations

import itertools
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData
from recbench.fitting import history_matrix, interaction_matrix, select_on_validation, with_validation_targets
from recbench.method import ScoringMethod

TUNED = ("n_components", "alpha_W", "l1_ratio")


@dataclass(frozen=True)
class NMFConfig:
    """NMF options; each tuple lists the values tried (one value fixes it)."""

    n_components: tuple[int, ...] = option((16, 32, 64), "latent dimensions tried")
    alpha_W: tuple[float, ...] = option((0.0, 0.001), "regularization (scikit-learn alpha_W; H the same), values tried")
    l1_ratio: tuple[float, ...] = option((0.0,), "share of L1 in the regularization (0: L2 only), values tried")
    max_iter: int = option(200, "coordinate-descent sweeps, in training and in each fold-in")
    refit_with_validation: bool = option(True, "after choosing, refit on training plus validation targets")

    def __post_init__(self) -> None:
        if not self.n_components or min(self.n_components) < 1:
            raise ConfigError(f"nmf: n_components needs at least one value, all >= 1; got {self.n_components}.")
        if not self.alpha_W or min(self.alpha_W) < 0:
            raise ConfigError(f"nmf: alpha_W needs at least one value, all >= 0; got {self.alpha_W}.")
        if not self.l1_ratio or not all(0 <= r <= 1 for r in self.l1_ratio):
            raise ConfigError(f"nmf: l1_ratio needs at least one value, each in [0, 1]; got {self.l1_ratio}.")
        if self.max_iter < 1:
            raise ConfigError(f"nmf: max_iter must be at least 1; got {self.max_iter}.")


class NMF(ScoringMethod):
    name = "nmf"
    description = "Non-negative matrix factorization (scikit-learn), users folded in from their history"
    Config = NMFConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        # more components than users or items is meaningless (nndsvda init refuses it): cap, then dedupe
        most = min(data.catalog.n_users, data.catalog.n_items)
        grid = itertools.product(*(getattr(self.config, n) for n in TUNED))
        settings = [dict(zip(TUNED, combo)) for combo in dict.fromkeys((min(k, most), *rest) for k, *rest in grid)]
        train = self._matrix(data.train)
        self.chosen, self.validation = select_on_validation(
            self.name, settings, data, lambda setting: setattr(self, "_model", self._train(train, setting)), self.score
        )
        final = with_validation_targets(data) if self.config.refit_with_validation else data.train
        self._model = self._train(self._matrix(final), self.chosen)

    def _matrix(self, train):
        return interaction_matrix(train, self.catalog.n_users, self.catalog.n_items)

    def _train(self, matrix, setting: dict):
        from sklearn.decomposition import NMF as SklearnNMF

        model = SklearnNMF(
            **setting, init="nndsvda", solver="cd", max_iter=self.config.max_iter, random_state=self.seed
        )
        with _single_blas_thread_quietly():
            model.fit(matrix)
        return model

    def score(self, examples: ExampleSet) -> np.ndarray:
        with _single_blas_thread_quietly():
            users = self._model.transform(history_matrix(examples, self.catalog.n_items))
        return users @ self._model.components_

    def describe(self) -> dict:
        return {
            "chosen": self.chosen, "training_sweeps": int(self._model.n_iter_), "validation": self.validation,
            "refit_with_validation": self.config.refit_with_validation,
        }


@contextmanager
def _single_blas_thread_quietly():
    """One BLAS thread (results independent of thread settings; a pool on 2 busy cores fitted 5x
    slower) and no ConvergenceWarning (a fixed sweep budget is the setting, not a failure)."""
    from sklearn.exceptions import ConvergenceWarning

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@hookimpl
def recbench_register_methods(register):
    register(NMF)
