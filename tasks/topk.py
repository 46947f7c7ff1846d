"""``topk``: generate 5 titles for a user (the RLHF top-k paper's protocol, on MovieLens).

Users are split at random into train/validation/test groups (70/15/15 by default). For each
validation or test user a cutoff position is drawn (seeded) among positions with at least
``min_history`` interactions before it and at least one after it. The input is the user's
demographics, the last ``history_window`` interactions before the cutoff (their ratings tell
liked, ``>= liked_threshold``, from disliked) and a release-date cutoff (the cutoff's date, given
as ``attributes["release_cutoff"]``); the targets are the next ``horizon`` interactions. Methods
fit on all interactions of training users plus every interaction before the cutoff of the
others. Generated titles are grounded with rapidfuzz WRatio (``match_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbench.arrays import concatenated_ranges
from recbench.config import option
from recbench.contracts import GENERATION, GenerationContract
from recbench.data.catalog import Catalog
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.interface import TitleList
from recbench.splits import UserSequences, user_random_split
from recbench.task import Task, TaskData, check_minimums


@dataclass(frozen=True)
class TopKParams:
    k: int = option(5, "titles generated per user")
    user_fractions: tuple[float, ...] = option((0.7, 0.15, 0.15), "train/validation/test fractions of users")
    split_seed: int = option(0, "seed of the user split and of the cutoff positions")
    history_window: int = option(50, "most recent interactions before the cutoff given as history")
    min_history: int = option(10, "interactions required before the cutoff")
    horizon: int = option(10, "interactions after the cutoff that count as ground truth")
    liked_threshold: float = option(3.0, "ratings at or above this are 'liked', below 'disliked' (paper: <=2 disliked)")
    match_threshold: float = option(80.0, "rapidfuzz WRatio score (0-100) a generated title needs to match an item")

    def __post_init__(self) -> None:
        check_minimums(self, k=1, split_seed=0, history_window=1, min_history=1, horizon=1)
        fractions = self.user_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"user_fractions must be 3 non-negative train/validation/test fractions summing to 1, got {fractions}")
        if not 0 <= self.match_threshold <= 100:
            raise ValueError(f"match_threshold is a rapidfuzz score from 0 to 100, got {self.match_threshold}")


class TopKTask(Task):
    kind = "topk"
    description = "Top-k title generation from a user profile, grounded to the catalog by fuzzy matching"
    contract_kind = GENERATION
    Params = TopKParams
    llm_interface = TitleList

    def contract(self) -> GenerationContract:
        return GenerationContract(k=self.params.k, match_threshold=self.params.match_threshold)

    def split_description(self) -> dict:
        p = self.params
        return {
            "split": f"user-level random {list(p.user_fractions)}, seed {p.split_seed}",
            "cutoff": f"uniform position with >= {p.min_history} interactions before and >= 1 after",
            "targets": f"next {p.horizon} interactions after the cutoff",
            "seen_items": "not masked (copying history is measured, not forbidden)",
        }

    def build(self, catalog: Catalog) -> TaskData:
        p = self.params
        seqs = UserSequences.of(catalog.interactions)
        eligible = seqs.lengths >= p.min_history + 1
        train_users, valid_users, test_users = user_random_split(seqs.users, p.user_fractions, p.split_seed)
        rng = np.random.default_rng(p.split_seed + 1)
        user_index = {int(u): i for i, u in enumerate(seqs.users)}

        def examples(group: np.ndarray, prefix: str, rng: np.random.Generator = rng):
            idx = np.array([user_index[int(u)] for u in group if eligible[user_index[int(u)]]], dtype=np.int64)
            lengths = seqs.lengths[idx]
            cut = rng.integers(p.min_history, lengths)  # position of the first target, in [min_history, len)
            starts = seqs.starts[idx]
            hist_len = np.minimum(cut, p.history_window)
            histories = seqs.histories(starts + cut - hist_len, hist_len)
            n_targets = np.minimum(lengths - cut, p.horizon)
            target_hist = seqs.histories(starts + cut, n_targets)
            as_of = catalog.interactions["timestamp"].to_numpy(np.int64)[starts + cut]
            users = seqs.users[idx]
            keys = np.array([f"{prefix}{u}" for u in catalog.users["user_id"].to_numpy(dtype=str)[users]])
            attributes = pd.DataFrame({"release_cutoff": pd.to_datetime(as_of, unit="s").strftime("%Y-%m-%d")})
            ex = ExampleSet(keys=keys, users=users, histories=histories, as_of=as_of, attributes=attributes)
            return ex, Targets(target_hist.indptr, target_hist.items), starts + cut, starts + lengths

        valid, valid_t, v_cut, v_end = examples(valid_users, "valid:")
        test, test_t, t_cut, t_end = examples(test_users, "")
        hidden = np.zeros(len(catalog.interactions), dtype=bool)
        for cut_rows, end_rows in ((v_cut, v_end), (t_cut, t_end)):
            lengths = end_rows - cut_rows
            hidden[np.repeat(cut_rows, lengths) + concatenated_ranges(lengths)] = True
        train = catalog.interactions[~hidden].reset_index(drop=True)
        # labelled examples for LLM training: training users cut the same way, by a generator of their own
        train_ex, train_t, _, _ = examples(train_users, "train:", np.random.default_rng([p.split_seed, 2]))
        view = catalog.view()
        fit = FitData(view, train, valid, valid_t, train_examples=train_ex, train_targets=train_t, llm=self.llm_for(view))
        stats = {
            "train_users": len(train_users), "valid_examples": len(valid), "test_examples": len(test),
            "ineligible_users": int((~eligible).sum()), "train_interactions": len(train),
        }
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, stats=stats)
