"""``rerank``: the discovery rerank of the verbalization paper.

Leave-one-out targets as in ``fullrank``; each example shows at most ``max_history`` most recent
interactions and ``n_candidates`` candidates: the target plus negatives drawn uniformly (seeded)
from items the user never interacted with anywhere in the data, in a seeded random order. The
headline metric is Recall@1 on discovery examples: targets the user had not interacted with
before (all of them on MovieLens, which has no repeat ratings).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recbench.arrays import sorted_contains
from recbench.config import option
from recbench.contracts import CANDIDATES, CandidatesContract
from recbench.data.catalog import Catalog
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.interface import ItemChoice
from recbench.task import Task, TaskData, check_minimums
from recbench.tasks.fullrank import leave_one_out_examples


@dataclass(frozen=True)
class RerankParams:
    max_history: int = option(100, "most recent interactions shown per example")
    n_candidates: int = option(10, "candidates per example: the target plus n-1 negatives")
    sampling_seed: int = option(0, "seed of negative sampling and candidate order")
    min_interactions: int = option(3, "users with fewer interactions are kept for training only")

    def __post_init__(self) -> None:
        check_minimums(self, max_history=1, n_candidates=2, sampling_seed=0, min_interactions=3)


def sample_candidates(
    users: np.ndarray, targets: np.ndarray, interacted: np.ndarray, n_items: int,
    n_candidates: int, rng: np.random.Generator,
) -> np.ndarray:
    """``(n, n_candidates)``: each row the target plus distinct never-interacted items, shuffled.

    ``interacted`` holds the keys ``user * n_items + item`` of every interaction.
    """
    # sorted once, then binary search per draw: np.isin would re-sort all keys for every draw
    keys = np.sort(np.asarray(interacted, dtype=np.int64))
    out = np.empty((len(users), n_candidates), dtype=np.int32)
    for row, (user, target) in enumerate(zip(users, targets)):
        chosen: list[int] = []
        while len(chosen) < n_candidates - 1:
            draw = rng.integers(0, n_items, size=4 * n_candidates)
            fresh = draw[~sorted_contains(keys, np.int64(user) * n_items + draw)]
            for item in fresh:
                if item != target and item not in chosen:
                    chosen.append(int(item))
                    if len(chosen) == n_candidates - 1:
                        break
        row_items = np.array([target, *chosen], dtype=np.int32)
        out[row] = row_items[rng.permutation(n_candidates)]
    return out


class RerankTask(Task):
    kind = "rerank"
    description = "Discovery rerank of 10 candidates (target + never-seen negatives), Recall@1"
    contract_kind = CANDIDATES
    Params = RerankParams
    llm_interface = ItemChoice

    def contract(self) -> CandidatesContract:
        return CandidatesContract(k=self.params.n_candidates)

    def split_description(self) -> dict:
        return {
            "split": "leave_one_out",
            "history": f"at most {self.params.max_history} most recent interactions",
            "candidates": f"target + {self.params.n_candidates - 1} uniform negatives never interacted with, seed {self.params.sampling_seed}",
        }

    def build(self, catalog: Catalog) -> TaskData:
        p = self.params
        n_free = catalog.n_items - catalog.interactions.groupby("user").size().max()
        if p.n_candidates < 2 or n_free < p.n_candidates - 1:
            raise ConfigError(
                f"task {self.spec.name!r}: n_candidates={p.n_candidates} needs at least {p.n_candidates - 1} items "
                f"every user never interacted with; the most active user leaves {n_free}."
            )
        split, valid, valid_t, test, test_t = leave_one_out_examples(catalog, p.min_interactions, p.max_history)
        inter = catalog.interactions
        interacted = inter["user"].to_numpy(np.int64) * catalog.n_items + inter["item"].to_numpy(np.int64)
        rng = np.random.default_rng(p.sampling_seed)
        valid = replace(valid, candidates=sample_candidates(valid.users, valid_t.items, interacted, catalog.n_items, p.n_candidates, rng))
        test = replace(test, candidates=sample_candidates(test.users, test_t.items, interacted, catalog.n_items, p.n_candidates, rng))
        full_history_test = leave_one_out_examples(catalog, p.min_interactions)[3]
        discovery = discovery_mask(full_history_test, test_t)
        train, train_t = training_examples(catalog, split, p, interacted)
        view = catalog.view()
        fit = FitData(view, split.train, valid, valid_t, train_examples=train, train_targets=train_t, llm=self.llm_for(view))
        stats = {"test_users": len(test), "discovery_examples": int(discovery.sum())}
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, subsets={"discovery": discovery}, stats=stats)


def training_examples(catalog: Catalog, split, p: RerankParams, interacted: np.ndarray) -> tuple[ExampleSet, Targets]:
    """Labelled examples for LLM training, from training interactions only: each user's last
    training interaction is the target, the ones before it the history, negatives drawn as for the
    test (from their own seeded generator, so the validation and test candidates stay as they were)."""
    seqs = split.sequences
    frame = catalog.interactions
    user_start = seqs.starts[np.searchsorted(seqs.users, split.users)]
    target_rows = split.valid_rows - 1
    keep = target_rows > user_start  # at least one interaction of history
    users, target_rows, user_start = split.users[keep], target_rows[keep], user_start[keep]
    starts = target_rows - np.minimum(target_rows - user_start, p.max_history)
    keys = np.array([f"train:{u}" for u in catalog.users["user_id"].to_numpy(dtype=str)[users]])
    targets = frame["item"].to_numpy(np.int32)[target_rows]
    examples = ExampleSet(keys=keys, users=users, histories=seqs.histories(starts, target_rows - starts),
                          as_of=frame["timestamp"].to_numpy(np.int64)[target_rows])
    rng = np.random.default_rng([p.sampling_seed, 1])
    candidates = sample_candidates(users, targets, interacted, catalog.n_items, p.n_candidates, rng)
    return replace(examples, candidates=candidates), Targets.single(targets)


def discovery_mask(examples: ExampleSet, targets: Targets) -> np.ndarray:
    """True where the target is not among the example's earlier interactions (pass full histories)."""
    hist = examples.histories
    rows = hist.row_ids()
    seen = targets.items[rows] == hist.items
    repeat = np.zeros(len(examples), dtype=bool)
    np.logical_or.at(repeat, rows[seen], True)
    return ~repeat
