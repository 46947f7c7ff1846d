"""``ease``: Embarrassingly Shallow Autoencoder (Steck, WWW 2019), an item-item linear model.

With ``X`` the binary users x items training matrix and ``P = (XᵀX + λI)⁻¹``, the weights are
``B = I - P / diag(P)`` (column ``j`` divided by ``P[j, j]``), which forces ``diag(B) = 0``. An
example is scored by ``history_vector @ B``, so any user, known at training time or not, is
scored from the history the task gives at prediction time, with no fold-in.

λ is chosen among the ``l2`` values by validation NDCG@10 (``recbench.fitting.validation_ndcg``),
then the weights are refitted on the training interactions plus the validation targets. The dense
``n_items x n_items`` weight matrix limits EASE to catalogs of some tens of thousands of items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData
from recbench.fitting import history_matrix, interaction_matrix, select_on_validation, with_validation_targets
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class EASEConfig:
    """EASE options. The default λ values span what the EASE paper and RecBole tune over for
    MovieLens-sized data (the paper's ML-20M optimum is 500), up to 2000 because the short
    histories of the rerank and topk tasks chose 1000; 7 inversions of about 1 s on ML-100K."""

    l2: tuple[float, ...] = option((50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0), "λ values tried; one value fixes λ")
    refit_with_validation: bool = option(True, "after choosing λ, refit on training plus validation targets")

    def __post_init__(self) -> None:
        if not self.l2 or min(self.l2) <= 0:
            raise ConfigError(f"ease: l2 needs at least one value, all positive; got {self.l2}.")


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """``B = I - P / diag(P)`` with ``P = (gram + l2 I)⁻¹``; the diagonal of ``B`` is zero."""
    precision = np.linalg.inv(gram + l2 * np.eye(len(gram)))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)  # float32 halves memory and scoring time


class EASE(ScoringMethod):
    name = "ease"
    description = "EASE (Steck 2019): closed-form item-item linear autoencoder, λ tuned on validation"
    Config = EASEConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        # one BLAS thread: results independent of thread settings; a pool on busy shared cores is slower
        with threadpool_limits(1, "blas"):
            settings = [{"l2": l2} for l2 in self.config.l2]
            gram = self._gram(data.train) if len(settings) > 1 else None
            self.chosen, self.validation = select_on_validation(
                self.name, settings, data, lambda s: setattr(self, "_weights", ease_weights(gram, s["l2"])), self.score
            )
            final = with_validation_targets(data) if self.config.refit_with_validation else data.train
            self._weights = ease_weights(self._gram(final), self.chosen["l2"])

    def _gram(self, train) -> np.ndarray:
        matrix = interaction_matrix(train, self.catalog.n_users, self.catalog.n_items)
        return (matrix.T @ matrix).toarray().astype(np.float64)

    def score(self, examples: ExampleSet) -> np.ndarray:
        return np.asarray(history_matrix(examples, self.catalog.n_items) @ self._weights)

    def describe(self) -> dict:
        return {
            "chosen": self.chosen, "validation": self.validation,
            "refit_with_validation": self.config.refit_with_validation,
        }


@hookimpl
def recbench_register_methods(register):
    register(EASE)
