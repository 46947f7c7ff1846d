"""``bert4rec``: BERT4Rec (Sun et al., CIKM 2019), a bidirectional transformer trained to fill in masked items.

Each item of a user's training sequence is replaced by a ``[MASK]`` token with probability
``mask_prob`` (at least one per sequence) and predicted from both sides with softmax
cross-entropy over the whole catalog; the item embedding matrix is the output layer. At
prediction a ``[MASK]`` is appended after the example's history (its last ``max_len - 1`` items)
and the state at that position scores every item.

BERT4Rec learns from a fraction of the positions per epoch, so it needs many more epochs than
SASRec: Petrov & Macdonald (RecSys 2022) trace most failed reproductions to under-training. The
epoch cap is therefore high and training ends on early stopping (validation NDCG@10 every
``eval_every`` epochs, ``patience`` checks without a gain), keeping the best epoch's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod
from recbench.plugins.classic.sasrec import check_encoder_options


@dataclass(frozen=True)
class BERT4RecConfig:
    """BERT4Rec options. Defaults follow the paper's ML-1M setup (length 200, size 64, 2 blocks, 2 heads, mask 0.2)."""

    mask_prob: float = option(0.2, "probability that a training item is replaced by [MASK]")
    max_len: int = option(200, "most recent items of a sequence the model reads, the [MASK] included at prediction")
    hidden: int = option(64, "embedding and hidden size (the feed-forward layer is 4x)")
    blocks: int = option(2, "transformer blocks")
    heads: int = option(2, "attention heads per block (must divide hidden)")
    dropout: float | None = option(0.1, "dropout rate (the paper's); None chooses it from dropout_grid by validation NDCG@10")
    dropout_grid: tuple[float, ...] = option((0.1, 0.3), "dropout rates tried when dropout is None")
    lr: float = option(1e-3, "Adam learning rate")
    batch_size: int = option(32, "sequences per Adam step")
    max_epochs: int = option(2000, "upper bound on training epochs; early stopping normally ends training first")
    patience: int = option(5, "stop after this many validation checks without a better NDCG@10")
    eval_every: int = option(10, "epochs between validation checks (BERT4Rec's curve is slow and noisy: check less often)")
    device: str = option("auto", "torch device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda', ...")

    def __post_init__(self) -> None:
        check_encoder_options(self)
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2 (one history item and the [MASK]), got {self.max_len}")


class BERT4Rec(ScoringMethod):
    name = "bert4rec"
    description = "BERT4Rec: bidirectional self-attention trained by masked item prediction (full-softmax CE), early-stopped on validation"
    Config = BERT4RecConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        from recbench.sequential import MaskedItemObjective, choose_dropout

        grid = self.config.dropout_grid if self.config.dropout is None else (self.config.dropout,)
        objective = MaskedItemObjective(self.config.mask_prob)
        self._model, self._trials = choose_dropout(data, self.config, grid, objective, self.seed, self.name)

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._model.score(examples)

    def describe(self) -> dict[str, Any]:
        from recbench.sequential import describe_choice

        return describe_choice(self._model, self._trials)


@hookimpl
def recbench_register_methods(register):
    register(BERT4Rec)
