"""Shared pieces for methods that train: sparse matrices, validation scoring, grid search.

Model selection in recbench's built-in methods is task-agnostic: a candidate configuration is
scored by NDCG@10 of a full-catalog ranking (seen items excluded) of the validation examples,
whatever task is being run, so a method never needs task-specific code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recbench.contracts import FullCatalogContract
from recbench.data.catalog import sort_interactions
from recbench.examples import ExampleSet, FitData, Targets

VALIDATION_METRIC = "ndcg@10"


def interaction_matrix(train: pd.DataFrame, n_users: int, n_items: int, *, binary: bool = True) -> sparse.csr_matrix:
    """Users x items CSR of the training interactions (1 per pair, or the rating when not binary)."""
    values = np.ones(len(train), np.float32) if binary else train["rating"].fillna(1.0).to_numpy(np.float32)
    matrix = sparse.csr_matrix(
        (values, (train["user"].to_numpy(), train["item"].to_numpy())), shape=(n_users, n_items), dtype=np.float32
    )
    if binary:
        matrix.data[:] = 1.0  # repeated pairs count once
    return matrix


def history_matrix(examples: ExampleSet, n_items: int) -> sparse.csr_matrix:
    """Examples x items CSR with 1 for each item in an example's history."""
    hist = examples.histories
    matrix = sparse.csr_matrix(
        (np.ones(len(hist.items), np.float32), hist.items, hist.indptr), shape=(len(examples), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def with_validation_targets(data: FitData) -> pd.DataFrame:
    """Training interactions plus each validation target, for the final refit after tuning."""
    extra = pd.DataFrame(
        {
            "user": np.repeat(data.valid.users, data.valid_targets.counts).astype(np.int32),
            "item": data.valid_targets.items.astype(np.int32),
            "timestamp": np.repeat(data.valid.as_of, data.valid_targets.counts).astype(np.int64),
            "rating": np.float32(np.nan),
        }
    )
    return sort_interactions(pd.concat([data.train, extra], ignore_index=True))


def validation_ndcg(
    score: Callable[[ExampleSet], np.ndarray], valid: ExampleSet, targets: Targets, *, k: int = 10,
    batch_size: int = 1024, max_examples: int | None = None,
) -> float:
    """NDCG@k of full-catalog rankings (history excluded) of the validation examples."""
    from recbench.method import top_k
    from recbench.metrics import Outcome

    if max_examples is not None and len(valid) > max_examples:
        rows = np.random.default_rng(0).choice(len(valid), max_examples, replace=False)
        rows.sort()
        valid, targets = valid.take(rows), targets.take(rows)
    ranked = []
    for _, batch in valid.batches(batch_size):
        scores = np.array(score(batch), dtype=np.float64, copy=True)
        scores[batch.histories.row_ids(), batch.histories.items] = -np.inf
        ranked.append(top_k(scores, k).items)
    hits = Outcome.from_ranking(np.concatenate(ranked), targets).hits
    gains = hits / np.log2(np.arange(2, k + 2))
    ideal = np.array([np.sum(1 / np.log2(np.arange(2, min(c, k) + 2))) for c in targets.counts])
    return float(np.mean(gains.sum(axis=1) / ideal))


def grid_settings(config: Any, tuned: Iterable[str]) -> list[dict[str, Any]]:
    """Every combination of the tuple-valued config fields ``tuned`` (one value fixes a field)."""
    tuned = list(tuned)
    return [dict(zip(tuned, values)) for values in itertools.product(*(getattr(config, n) for n in tuned))]


def select_on_validation(
    method: str, settings: list[dict[str, Any]], data: FitData, fit_setting: Callable[[dict[str, Any]], None],
    score: Callable[[ExampleSet], np.ndarray],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit each setting with ``fit_setting`` and keep the one with the best validation NDCG@10.

    Returns ``(chosen setting, one row per setting with its score)``; a single setting is chosen
    without fitting. The caller refits the chosen setting on its final training data.
    """
    if len(settings) == 1:
        return settings[0], []
    if len(data.valid) == 0:
        from recbench.errors import ConfigError

        raise ConfigError(f"{method}: choosing among {len(settings)} settings needs validation examples; give one value each.")
    rows = []
    for setting in settings:
        fit_setting(setting)
        rows.append({**setting, VALIDATION_METRIC: round(validation_ndcg(score, data.valid, data.valid_targets), 6)})
    best = max(range(len(rows)), key=lambda i: rows[i][VALIDATION_METRIC])
    return settings[best], rows


def config_grid(base: Any, grid: Mapping[str, Iterable[Any]]) -> list[Any]:
    """Every combination of ``grid`` values applied to the frozen config ``base``."""
    keys = list(grid)
    return [replace(base, **dict(zip(keys, values))) for values in itertools.product(*(grid[k] for k in keys))]


def validation_contract(k: int = 10) -> FullCatalogContract:
    return FullCatalogContract(k=k, exclude_seen=True)


def sample_triples(rng: np.random.Generator, pairs: np.ndarray, known: np.ndarray, n_items: int):
    """Shuffled training ``pairs`` (user, item), each with a uniform negative outside its user's training items
    (``known``: sorted keys ``user * n_items + item``), for BPR-style losses (``bpr``, ``lightgcn``)."""
    order = rng.permutation(len(pairs))
    users, positives = pairs[order, 0], pairs[order, 1]
    negatives = rng.integers(0, n_items, len(users))
    redo = np.arange(len(users))
    while len(redo):  # resample only the negatives that hit a training item
        keys = users[redo] * n_items + negatives[redo]
        hit = known[np.minimum(np.searchsorted(known, keys), len(known) - 1)] == keys
        redo = redo[hit]
        negatives[redo] = rng.integers(0, n_items, len(redo))
    return users, positives, negatives


@dataclass(frozen=True)
class EarlyStopped:
    """What :func:`train_early_stopped` kept: the model of the best validation NDCG@10 and when it was."""

    model: Any  # what ``snapshot`` returned (anything with ``score(examples)``)
    best_epoch: int  # epoch of the kept model
    validation_ndcg: float | None  # NDCG@10 of the kept model; None for a fixed-length run
    epochs_run: int


def train_early_stopped(
    run_epoch: Callable[[int], None], snapshot: Callable[[], Any], valid: tuple[ExampleSet, Targets] | None, *,
    max_epochs: int, eval_every: int = 1, patience: int,
) -> EarlyStopped:
    """Run ``run_epoch(epoch)`` for epochs 1..``max_epochs``. With ``valid``, every ``eval_every`` epochs (and
    at the last) rank the validation examples with ``snapshot()``'s model, keep the best, and stop after
    ``patience`` checks without a gain; without, train every epoch and keep the last model."""
    best: EarlyStopped | None = None
    stale, epoch = 0, 0
    for epoch in range(1, max_epochs + 1):
        run_epoch(epoch)
        if valid is None or (epoch % eval_every and epoch != max_epochs):
            continue
        current = snapshot()
        ndcg = validation_ndcg(current.score, *valid)
        if best is None or ndcg > best.validation_ndcg:
            best, stale = EarlyStopped(current, epoch, ndcg, epoch), 0
        else:
            stale += 1
            if stale >= patience:
                break
    if best is None:
        return EarlyStopped(snapshot(), epoch, None, epoch)
    return replace(best, epochs_run=epoch)
