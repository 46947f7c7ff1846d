"""``mcl``: LightGCN trained with the Mixed-Centric Loss (Gao, Cheng, Perez, Sun and Volkovs, WWW 2022).

A baseline of the LangPTune paper's Table 2. The model is LightGCN's (one embedding table for users
then items, ``K`` propagation layers over the normalized user-item graph, :mod:`recbench.graph`)
with the layers *summed*, as the authors' code combines them; what changes is the objective and
the geometry. Scores are negative squared Euclidean distances, ``-||u - i||^2``, so training pulls
a user's items inside a ball around the user and pushes other items out.

Each step takes a batch of users, all their training pairs, and ``num_neg`` uniform negatives per
pair (items the user has no training interaction with). With ``d_p`` the distance to a positive
and ``d_n`` to a negative, both mined per user as the authors' code does:

- hard negatives: ``d_n < margin + max d_p`` over the user's positives (others are dropped);
- hard positives: ``d_p > min d_n - margin`` over the user's negatives (others are dropped);
- loss ``(1/beta) log(1 + sum exp(-beta (d_n + lamb_n)) / B) + (1/alpha) log(1 + sum exp(alpha (d_p
  + lamb_p)) / B)`` with ``B`` the configured users per batch, plus ``l2`` times half the squared
  norm of the batch's layer-0 embeddings (each pair's, and each negative's divided by ``num_neg``).

Thresholds are mined from detached distances (the code builds them as new tensors). Defaults are
the code's for Amazon Digital Music and Grocery (alpha 1.25, beta 5, lamb_p 6.5, lamb_n -0.5,
margin 1, 10 negatives, 64 dimensions, 3 layers, Adam 1e-3, L2 1e-4) except the user batch: the
code's 1,000 users per batch gives no batch at all on ML-100K's 943 users (it runs ``n_users //
batch`` batches an epoch), so ``user_batch`` is 128. Epochs are chosen on validation NDCG@10, as
for ``lightgcn``.
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
from recbench.fitting import EarlyStopped, train_early_stopped, with_validation_targets
from recbench.devices import resolve_device, torch_threads
from recbench.graph import graph_product, normalized_adjacency, propagate, user_vectors
from recbench.method import ScoringMethod


@dataclass(frozen=True)
class MCLConfig:
    """MCL options (defaults: the authors' code, except ``user_batch``; see the module doc)."""

    factors: int = option(64, "embedding size of users and items")
    layers: int = option(3, "propagation layers K; layers 0..K are summed (the authors' code)")
    lr: float = option(1e-3, "Adam learning rate")
    l2: float = option(1e-4, "L2 weight on the batch's layer-0 embeddings")
    user_batch: int = option(128, "users per step, each with all their training pairs (B in the loss)")
    num_neg: int = option(10, "uniform negatives per training pair")
    margin: float = option(1.0, "mining margin m")
    alpha: float = option(1.25, "positive-part temperature")
    beta: float = option(5.0, "negative-part temperature")
    lamb_p: float = option(6.5, "positive-part threshold")
    lamb_n: float = option(-0.5, "negative-part threshold")
    max_epochs: int = option(300, "upper bound on epochs (each user once per epoch)")
    eval_every: int = option(5, "epochs between validation checks")
    patience: int = option(6, "stop after this many validation checks without a better NDCG@10")
    refit_with_validation: bool = option(False, "retrain on training plus validation targets for the best epoch count")
    device: str = option("auto", "torch device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda', ...")
    cpu_threads: int = option(1, "torch CPU threads while fitting (restored after)")

    def __post_init__(self) -> None:
        for name in ("factors", "user_batch", "num_neg", "max_epochs", "eval_every", "patience", "cpu_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mcl: {name} must be at least 1; got {getattr(self, name)}.")
        for name in ("lr", "alpha", "beta"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"mcl: {name} must be positive; got {getattr(self, name)}.")
        if self.layers < 0 or self.l2 < 0:
            raise ConfigError(f"mcl: layers and l2 must not be negative; got layers={self.layers}, l2={self.l2}.")


def mcl_loss(torch, user: Any, positive: Any, negatives: Any, group: Any, n_groups: int, config: MCLConfig):
    """The mixed-centric loss of one batch (without L2).

    ``user`` and ``positive`` are ``(N, d)`` embeddings of the batch's training pairs, ``negatives``
    ``(N, W, d)``, ``group`` ``(N,)`` the batch-local index of each pair's user (``0..n_groups-1``).
    """
    pos = (user - positive).pow(2).sum(dim=1)  # (N,)
    neg = (user.unsqueeze(1) - negatives).pow(2).sum(dim=2)  # (N, W)
    with torch.no_grad():  # the thresholds are mined, not differentiated
        inf = torch.full((n_groups,), float("inf"), dtype=pos.dtype, device=pos.device)
        max_pos = (-inf).scatter_reduce(0, group, pos, reduce="amax")[group]
        min_neg = inf.scatter_reduce(0, group, neg.min(dim=1).values, reduce="amin")[group]
    hard_neg = neg < config.margin + max_pos.unsqueeze(1)
    hard_pos = pos > min_neg - config.margin
    log_b = float(np.log(config.user_batch))
    zero = torch.zeros(1, dtype=pos.dtype, device=pos.device)
    # log(1 + sum(exp(x)) / B) = logsumexp([0, x - log B]) over the kept terms
    neg_terms = (-config.beta * (neg + config.lamb_n) - log_b)[hard_neg]
    pos_terms = (config.alpha * (pos + config.lamb_p) - log_b)[hard_pos]
    return (torch.logsumexp(torch.cat([zero, neg_terms]), 0) / config.beta
            + torch.logsumexp(torch.cat([zero, pos_terms]), 0) / config.alpha)


@dataclass(frozen=True)
class Embeddings:
    users: np.ndarray
    items: np.ndarray
    cold: np.ndarray  # users with no training interaction: placed at the centroid of their history's items

    def score(self, examples: ExampleSet) -> np.ndarray:
        vectors = user_vectors(self.users, self.items, self.cold, examples)
        # -||u - i||^2 without the user's own norm, which does not change the user's ranking
        return 2.0 * vectors @ self.items.T - (self.items**2).sum(axis=1)


class MCL(ScoringMethod):
    name = "mcl"
    description = "LightGCN trained with the Mixed-Centric Loss (Gao et al., WWW 2022): distance scores, mined hard pairs"
    Config = MCLConfig

    def fit(self, data: FitData) -> None:
        super().fit(data)
        self._device = resolve_device(self.config.device, self.name)
        with torch_threads(self.config.cpu_threads) as torch:
            train = partial(train_mcl, torch, n_users=data.catalog.n_users, n_items=data.catalog.n_items,
                            seed=self.seed, device=self._device)
            valid = (data.valid, data.valid_targets) if len(data.valid) else None
            self._run = train(data.train, config=self.config, valid=valid)
            final = self._run
            if self.config.refit_with_validation and valid is not None:
                fixed = replace(self.config, max_epochs=final.best_epoch)
                final = train(with_validation_targets(data), config=fixed, valid=None)
            self._embeddings = final.model

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self._embeddings.score(examples)

    def describe(self) -> dict[str, Any]:
        ndcg = self._run.validation_ndcg
        return {"best_epoch": self._run.best_epoch, "epochs_run": self._run.epochs_run,
                "validation_ndcg@10": None if ndcg is None else round(ndcg, 6), "device": str(self._device)}


def train_mcl(torch, train: pd.DataFrame, n_users: int, n_items: int, config: MCLConfig, seed: int, device,
              valid: tuple[ExampleSet, Targets] | None) -> EarlyStopped:
    """Train with ``valid``: keep the best validation NDCG@10, stop after ``patience`` checks without a
    gain; without: exactly ``max_epochs``."""
    pairs = train[["user", "item"]].drop_duplicates().sort_values(["user", "item"]).to_numpy(np.int64)
    graph = graph_product(torch, normalized_adjacency(pairs[:, 0], pairs[:, 1], n_users, n_items), device)
    known = pairs[:, 0] * n_items + pairs[:, 1]  # sorted
    degree = np.bincount(pairs[:, 0], minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(degree)])
    trainable = np.flatnonzero((degree > 0) & (degree < n_items))  # a user with every item has no negative

    generator = torch.Generator().manual_seed(seed)
    bound = float(np.sqrt(6.0 / (n_users + n_items + config.factors)))  # xavier-uniform, as the code
    weights = torch.empty(n_users + n_items, config.factors).uniform_(-bound, bound, generator=generator)
    embedding = torch.nn.Parameter(weights.to(device))
    optimizer = torch.optim.Adam([embedding], lr=config.lr)
    rng = np.random.default_rng(seed)

    def snapshot() -> Embeddings:
        with torch.no_grad():
            out = propagate(graph, embedding, config.layers, combine="sum").cpu().numpy()
        return Embeddings(out[:n_users].copy(), out[n_users:].copy(), degree == 0)

    def run_epoch(epoch: int) -> None:
        order = rng.permutation(trainable)
        for lo in range(0, len(order), config.user_batch):
            users = order[lo : lo + config.user_batch]
            rows = np.concatenate([np.arange(starts[u], starts[u + 1]) for u in users])
            group = np.repeat(np.arange(len(users)), degree[users])
            negatives = _negatives(rng, pairs[rows, 0], known, n_items, config.num_neg)
            u, i, j, g = (torch.from_numpy(a).to(device) for a in (pairs[rows, 0], pairs[rows, 1] + n_users,
                                                                   negatives + n_users, group))
            out = propagate(graph, embedding, config.layers, combine="sum")
            loss = mcl_loss(torch, out[u], out[i], out[j], g, len(users), config)
            ego = (embedding[u].pow(2).sum() + embedding[i].pow(2).sum()) / len(u)
            ego = ego + embedding[j].pow(2).sum() / (len(u) * config.num_neg)
            loss = loss + config.l2 * 0.5 * ego
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return train_early_stopped(run_epoch, snapshot, valid, max_epochs=config.max_epochs,
                               eval_every=config.eval_every, patience=config.patience)


def _negatives(rng: np.random.Generator, users: np.ndarray, known: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """``(len(users), k)`` uniform items outside each user's training items (``known``: sorted user * n_items + item)."""
    out = rng.integers(0, n_items, (len(users), k))
    redo = np.ones_like(out, dtype=bool)
    while redo.any():
        keys = users[:, None] * n_items + out
        hit = known[np.minimum(np.searchsorted(known, keys), len(known) - 1)] == keys
        redo = hit
        out[redo] = rng.integers(0, n_items, int(redo.sum()))
    return out


@hookimpl
def recbench_register_methods(register):
    register(MCL)
