"""``sasrec``: SASRec (Kang & McAuley, ICDM 2018), a causal transformer over the user's item sequence.

Each position of a user's training sequence predicts the next item from the items before it. With
``loss="ce"`` (the default) the loss is softmax cross-entropy over the whole catalog, the variant
Klenitskiy & Vasilev (RecSys 2023) show beats BERT4Rec; ``loss="bce"`` is the original binary
cross-entropy with one sampled negative per position. The item embedding matrix is the output
layer. At prediction the example's history (its last ``max_len`` items) is the input and the state
at its last position scores every item.

Training stops early on validation NDCG@10 and keeps the best epoch's weights; with ``dropout``
left at None each rate of ``dropout_grid`` is trained and the best on validation kept. The shared
model and training loop live in :mod:`recbench.sequential` (imported inside ``fit``: torch is heavy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec options. Defaults follow Klenitskiy & Vasilev's ML-1M setup (length 200, size 64, 2 blocks)."""

    loss: Literal["ce", "bce"] = option("ce", "'ce': softmax cross-entropy over all items; 'bce': original, one sampled negative")
    max_len: int = option(200, "most recent items of a sequence the model reads")
    hidden: int = option(64, "embedding and hidden size")
    blocks: int = option(2, "transformer blocks")
    heads: int = option(1, "attention heads per block (must divide hidden)")
    dropout: float | None = option(None, "dropout rate; None chooses it from dropout_grid by validation NDCG@10")
    dropout_grid: tuple[float, ...] = option((0.2, 0.5), "dropout rates tried when dropout is None (SASRec paper: 0.2 on ML-1M, 0.5 on sparse data)")
    lr: float = option(1e-3, "Adam learning rate")
    batch_size: int = option(32, "sequences per Adam step (on ML-100K, 32 reached the validation optimum in about 30 epochs)")
    max_epochs: int = option(200, "upper bound on training epochs (one pass over all users' sequences)")
    patience: int = option(10, "stop after this many validation checks without a better NDCG@10 (ML-100K's curve is noisy)")
    eval_every: int = option(2, "epochs between validation checks")
    device: str = option("auto", "torch device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda', ...")

    def __post_init__(self) -> None:
        check_encoder_options(self)
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}")


def check_encoder_options(config: Any) -> None:
    """Reject sizes, rates and grids a transformer encoder cannot train with."""
    for name in ("max_len", "hidden", "blocks", "heads", "batch_size", "max_epochs", "patience", "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.hidden % config.heads:
        raise ValueError(f"heads ({config.heads}) must divide hidden ({config.hidden}); pick a divisor or change hidden")
    rates = config.dropout_grid if config.dropout is None else (config.dropout,)
    if not rates or not all(0.0 <= r < 1.0 for r in rates):
        raise ValueError(
            f"dropout and every dropout_grid value must lie in [0, 1), got dropout={config.dropout}, "
            f"dropout_grid={config.dropout_grid}; set dropout=<rate> or list rates as dropout_grid=0.2,0.5"
        )
    if config.lr <= 0:
        raise ValueError(f"lr must be positive, got {config.lr}")


class SASRec(ScoringMethod):
    name = "sasrec"
    description = "SASRec: causal self-attention over the item sequence, full-softmax CE (or original BCE), early-stopped on validation"
    Config = SASRecConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        from recbench.sequential import NextItemObjective, choose_dropout

        grid = self.config.dropout_grid if self.config.dropout is None else (self.config.dropout,)
        self._model, self._trials = choose_dropout(data, self.config, grid, NextItemObjective(self.config.loss), self.seed, self.name)

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._model.score(examples)

    def describe(self) -> dict[str, Any]:
        from recbench.sequential import describe_choice

        return {"loss": self.config.loss, **describe_choice(self._model, self._trials)}


@hookimpl
def recbench_register_methods(register):
    register(SASRec)
