"""``lightgcn``: LightGCN (He et al., SIGIR 2020), embeddings smoothed over the user-item graph.

Users and items share one embedding table ``E0``. ``K`` propagation layers over the
symmetric-normalized bipartite adjacency, ``E(k+1) = D^-1/2 A D^-1/2 E(k)``, are averaged with
weight ``1/(K+1)``; a user's score for an item is the dot product of their averaged embeddings.
Training minimizes BPR over (user, positive, negative) triples, one per distinct training pair per
epoch, negatives drawn uniformly among items the user has no training interaction with, plus L2
on the batch's layer-0 ("ego") embeddings, with Adam.

Model selection: after every ``eval_every`` epochs the model ranks the validation examples over
the full catalog (:func:`recbench.fitting.validation_ndcg`); training stops after ``patience``
checks without a gain and keeps the best weights. Each value listed in ``l2`` (1e-4 and 1e-3 by
default) is trained so, and the one with the best validation NDCG@10 kept. With
``refit_with_validation``, the chosen ``l2`` is then retrained from scratch on the training
interactions plus the validation targets for its best epoch count, so the final graph holds each
user's latest item.

Defaults depart from the paper where measurements on ML-100K ``fullrank`` (2 shared CPU cores)
said so. With the paper's lr 1e-3 and batch 2048, early stopping ended at epoch 36 (best 20; 8 minutes)
with validation NDCG@10 0.040 and test NDCG@10 equal to most_popular's; lr 2e-2 peaked at epoch 19
with 0.066 (both before the catalog's tie rule changed; now it peaks at epoch 18). Refitting
with the validation targets left test NDCG@10 within noise (0.0705 against 0.0741 without) for
1.6 times the fit time of one ``l2``, so it is off by default (the classic MF baselines refit).

Users are scored by their fitted embedding (user codes are the catalog's, the same in training
and test). A user with no training interaction has no fitted embedding and is scored by the mean
of their history items' embeddings instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.fitting import EarlyStopped, sample_triples, train_early_stopped, with_validation_targets
from recbench.devices import resolve_device, torch_threads
from recbench.graph import graph_product, normalized_adjacency, propagate, user_vectors
from recbench.method import ScoringMethod

INIT_STD = 0.1  # the reference implementation's normal init


@dataclass(frozen=True)
class LightGCNConfig:
    factors: int = option(64, "embedding size of users and items")
    layers: int = option(3, "propagation layers K; layers 0..K are averaged with weight 1/(K+1)")
    lr: float = option(0.02, "Adam learning rate (the paper's 1e-3 barely moved in 36 epochs on ML-100K)")
    # measured on ML-100K: 1e-5 and 1e-4 score alike and 1e-2 loses a third, so the grid looks upwards only
    l2: tuple[float, ...] = option((1e-4, 1e-3), "L2 weight on the batch's layer-0 embeddings, values tried")
    batch_size: int = option(2048, "BPR triples per Adam step")
    max_epochs: int = option(60, "upper bound on training epochs (one triple per distinct training pair each)")
    patience: int = option(5, "stop after this many validation checks without a better NDCG@10")
    eval_every: int = option(1, "epochs between validation checks")
    refit_with_validation: bool = option(
        False, "retrain the chosen configuration on train + validation targets for its best epoch count"
    )
    device: str = option("auto", "torch device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda', ...")
    cpu_threads: int = option(1, "torch CPU threads while fitting (restored after); small tensors train fastest on one")

    def __post_init__(self) -> None:
        for name in ("factors", "layers", "batch_size", "max_epochs", "patience", "eval_every", "cpu_threads"):
            minimum = 0 if name == "layers" else 1
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.l2 or min(self.l2) < 0:
            raise ValueError(f"l2 needs at least one value, none negative; got {self.l2}")


@dataclass(frozen=True)
class Embeddings:
    """Final (layer-averaged) embeddings, and which users had no training interaction."""

    users: np.ndarray
    items: np.ndarray
    cold: np.ndarray

    def score(self, examples: ExampleSet) -> np.ndarray:
        vectors = user_vectors(self.users, self.items, self.cold, examples)
        return vectors @ self.items.T


class LightGCN(ScoringMethod):
    name = "lightgcn"
    description = "LightGCN: BPR-trained embeddings averaged over K layers of normalized user-item graph propagation"
    Config = LightGCNConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        self._device = resolve_device(self.config.device, self.name)
        with torch_threads(self.config.cpu_threads) as torch:
            self._fit(torch, data)

    def _fit(self, torch, data: FitData) -> None:
        values = list(dict.fromkeys(self.config.l2))
        valid = (data.valid, data.valid_targets) if len(data.valid) else None
        if valid is None and len(values) > 1:
            raise ConfigError(
                f"lightgcn: choosing among l2 values {values} needs validation examples and this task gives none; "
                "set one value (for example --set l2=1e-4)."
            )
        train = partial(train_lightgcn, torch, n_users=data.catalog.n_users, n_items=data.catalog.n_items,
                        config=self.config, seed=self.seed, device=self._device)
        trials = {l2: train(data.train, l2=l2, valid=valid) for l2 in values}
        # max keeps the first of equal scores: the l2 listed first
        self._l2 = max(trials, key=lambda l2: trials[l2].validation_ndcg or 0.0)
        self._selected, self._trials = trials[self._l2], trials
        final = self._selected
        if self.config.refit_with_validation:
            fixed = replace(self.config, max_epochs=final.best_epoch)
            final = train(with_validation_targets(data), config=fixed, l2=self._l2, valid=None)
        self._embeddings = final.model

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._embeddings.score(examples)

    def describe(self) -> dict[str, Any]:
        epoch = self._selected.best_epoch
        return {
            "chosen": {"l2": self._l2},
            "best_epoch": epoch,
            "validation_ndcg@10": _rounded(self._selected.validation_ndcg),
            "validation": [
                {"l2": l2, "best_epoch": run.best_epoch, "epochs_run": run.epochs_run,
                 "ndcg@10": _rounded(run.validation_ndcg)}
                for l2, run in self._trials.items()
            ],
            "final_model": (
                f"refit on train + validation targets for {epoch} epochs"
                if self.config.refit_with_validation else f"weights after epoch {epoch}"
            ),
            "device": str(self._device),
        }


def train_lightgcn(
    torch, train: pd.DataFrame, n_users: int, n_items: int, config: LightGCNConfig, l2: float, seed: int, device,
    valid: tuple[ExampleSet, Targets] | None,
) -> EarlyStopped:
    """Train one ``l2``: with ``valid``, keep the weights of the best validation NDCG@10 and stop after
    ``patience`` checks without a gain; without, train exactly ``max_epochs`` and keep the last."""
    pairs = train[["user", "item"]].drop_duplicates().to_numpy(np.int64)
    graph = graph_product(torch, normalized_adjacency(pairs[:, 0], pairs[:, 1], n_users, n_items), device)
    known = np.sort(pairs[:, 0] * n_items + pairs[:, 1])
    degree = np.bincount(pairs[:, 0], minlength=n_users)
    pairs = pairs[degree[pairs[:, 0]] < n_items]  # a user who has every item has no negative to sample
    cold = degree == 0

    init = torch.Generator().manual_seed(seed)
    weights = torch.empty(n_users + n_items, config.factors).normal_(0.0, INIT_STD, generator=init)
    embedding = torch.nn.Parameter(weights.to(device))
    optimizer = torch.optim.Adam([embedding], lr=config.lr)
    rng = np.random.default_rng(seed)

    def snapshot() -> Embeddings:
        with torch.no_grad():
            out = propagate(graph, embedding, config.layers).cpu().numpy()
        return Embeddings(out[:n_users].copy(), out[n_users:].copy(), cold)

    def run_epoch(epoch: int) -> None:
        users, positives, negatives = sample_triples(rng, pairs, known, n_items)
        for start in range(0, len(users), config.batch_size):
            u, i, j = (
                torch.from_numpy(column[start : start + config.batch_size] + offset).to(device)
                for column, offset in ((users, 0), (positives, n_users), (negatives, n_users))
            )
            out = propagate(graph, embedding, config.layers)
            margin = (out[u] * (out[i] - out[j])).sum(dim=1)
            ego = embedding[u].pow(2).sum() + embedding[i].pow(2).sum() + embedding[j].pow(2).sum()
            loss = torch.nn.functional.softplus(-margin).mean() + l2 * 0.5 * ego / len(u)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return train_early_stopped(run_epoch, snapshot, valid, max_epochs=config.max_epochs,
                               eval_every=config.eval_every, patience=config.patience)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@hookimpl
def recbench_register_methods(register):
    register(LightGCN)
