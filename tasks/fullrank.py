"""``fullrank``: chronological leave-one-out, ranking the full catalog with seen items excluded.

Per user with at least ``min_interactions`` interactions: the last one (by the catalog's tie
rule) is the test target, the second-last the validation target. A method fits on everything
else; a test input's history is every interaction before the test target (so it includes the
validation item), a validation input's history every interaction before the validation target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench.config import option
from recbench.contracts import FULL_CATALOG, FullCatalogContract
from recbench.data.catalog import Catalog
from recbench.examples import ExampleSet, FitData, Targets
from recbench.splits import leave_one_out
from recbench.task import Task, TaskData, check_minimums


@dataclass(frozen=True)
class FullRankParams:
    k: int = option(20, "items each method returns per user; the largest metric cutoff")
    min_interactions: int = option(3, "users with fewer interactions are kept for training only")

    def __post_init__(self) -> None:
        check_minimums(self, k=1, min_interactions=3)  # 3: one training, one validation and one test interaction


def leave_one_out_examples(catalog: Catalog, min_interactions: int, max_history: int | None = None):
    """Validation and test :class:`ExampleSet` and targets of a leave-one-out split."""
    split = leave_one_out(catalog.interactions, min_interactions)
    seqs = split.sequences
    frame = catalog.interactions
    ts = frame["timestamp"].to_numpy(np.int64)
    items = frame["item"].to_numpy(np.int32)
    user_start = seqs.starts[np.searchsorted(seqs.users, split.users)]

    def examples(target_rows: np.ndarray, prefix: str) -> tuple[ExampleSet, Targets]:
        lengths = target_rows - user_start
        starts = user_start
        if max_history is not None:
            starts = target_rows - np.minimum(lengths, max_history)
            lengths = target_rows - starts
        keys = np.array([f"{prefix}{u}" for u in catalog.users["user_id"].to_numpy(dtype=str)[split.users]])
        return (
            ExampleSet(keys=keys, users=split.users, histories=seqs.histories(starts, lengths), as_of=ts[target_rows]),
            Targets.single(items[target_rows]),
        )

    valid, valid_targets = examples(split.valid_rows, "valid:")
    test, test_targets = examples(split.test_rows, "")
    return split, valid, valid_targets, test, test_targets


class FullRankTask(Task):
    kind = "fullrank"
    description = "Leave-one-out next-item prediction over the full catalog, seen items excluded"
    contract_kind = FULL_CATALOG
    Params = FullRankParams

    def contract(self) -> FullCatalogContract:
        return FullCatalogContract(k=self.params.k, exclude_seen=True)

    def split_description(self) -> dict:
        return {
            "split": "leave_one_out",
            "test": "last interaction per user",
            "valid": "second-last interaction per user",
            "seen_items": "excluded from rankings",
            "candidates": "full catalog",
        }

    def build(self, catalog: Catalog) -> TaskData:
        split, valid, valid_targets, test, test_targets = leave_one_out_examples(
            catalog, self.params.min_interactions
        )
        fit = FitData(catalog.view(), split.train, valid, valid_targets)
        stats = {"test_users": len(test), "train_only_users": split.n_train_only_users, "train_interactions": len(split.train)}
        return TaskData(fit=fit, test_inputs=test, test_targets=test_targets, stats=stats)
