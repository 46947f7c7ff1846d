"""``topk``: generate 5 titles for a user (the RLHF top-k paper's protocol, on MovieLens).

Users are split at random into train/validation/test groups (70/15/15 by default). For each
validation or test user a cutoff position is drawn (seeded, uniformly) among the valid ones: at
least ``min_history`` interactions before it, at least one after it, and, the paper's window rule
(its section 3.1), a history window holding at least ``min_liked_disliked`` liked and as many
disliked interactions. Users with no valid cutoff are skipped and counted
(``window_skipped_users``). The input is the user's demographics, the last ``history_window``
interactions before the cutoff (their ratings tell liked, ``>= liked_threshold``, from disliked,
below it; unrated interactions are neither) and a release-date cutoff (the cutoff's date, given as
``attributes["release_cutoff"]``); the targets are the next ``horizon`` interactions. Methods fit
on all interactions of training users plus every interaction before the cutoff of the others;
training users' labelled examples are cut by the same rule. Generated titles are grounded with
rapidfuzz WRatio (``match_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbench.arrays import concatenated_ranges
from recbench.config import option
from recbench.contracts import GENERATION, GenerationContract
from recbench.data.catalog import Catalog
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.interface import TitleList
from recbench.splits import UserSequences, user_random_split
from recbench.task import Task, TaskData, check_minimums


@dataclass(frozen=True)
class ValidCutoffs:
    """Each user's valid cutoff positions, ascending, as CSR: user ``i``'s are ``positions[indptr[i]:indptr[i + 1]]``."""

    indptr: np.ndarray
    positions: np.ndarray


def window_cutoffs(lengths: np.ndarray, starts: np.ndarray, liked_before: np.ndarray, disliked_before: np.ndarray,
                   min_history: int, history_window: int, min_each: int) -> ValidCutoffs:
    """The cutoffs ``c`` in ``[min_history, length)`` whose window, the ``history_window`` rows before ``c``,
    holds at least ``min_each`` liked and ``min_each`` disliked rows.

    ``liked_before[r]`` counts liked rows of the frame before row ``r`` (a cumulative sum with a leading
    0), ``disliked_before`` likewise; ``starts``/``lengths`` are the users' runs of that frame.
    """
    n_candidates = np.maximum(lengths - min_history, 0)
    owner = np.repeat(np.arange(len(lengths)), n_candidates)
    cut = min_history + concatenated_ranges(n_candidates)
    row = starts[owner] + cut
    first = row - np.minimum(cut, history_window)
    ok = (liked_before[row] - liked_before[first] >= min_each) & (disliked_before[row] - disliked_before[first] >= min_each)
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[ok], minlength=len(lengths)), out=indptr[1:])
    return ValidCutoffs(indptr, cut[ok])


@dataclass(frozen=True)
class TopKParams:
    k: int = option(5, "titles generated per user")
    user_fractions: tuple[float, ...] = option((0.7, 0.15, 0.15), "train/validation/test fractions of users")
    split_seed: int = option(0, "seed of the user split and of the cutoff positions")
    history_window: int = option(50, "most recent interactions before the cutoff given as history")
    min_history: int = option(10, "interactions required before the cutoff")
    horizon: int = option(10, "interactions after the cutoff that count as ground truth")
    liked_threshold: float = option(3.0, "ratings at or above this are 'liked', below 'disliked' (paper: <=2 disliked)")
    min_liked_disliked: int = option(
        5, "a cutoff is valid only if its history window holds at least this many liked and this many disliked "
        "interactions (the RLHF paper's window rule, its k); 0 turns the rule off")
    match_threshold: float = option(80.0, "rapidfuzz WRatio score (0-100) a generated title needs to match an item")

    def __post_init__(self) -> None:
        check_minimums(self, k=1, split_seed=0, history_window=1, min_history=1, horizon=1, min_liked_disliked=0)
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
            "cutoff": (
                f"uniform position with >= {p.min_history} interactions before and >= 1 after"
                + (f", whose last {p.history_window} before hold >= {p.min_liked_disliked} liked (rating >= "
                   f"{p.liked_threshold:g}) and >= {p.min_liked_disliked} disliked (below); users with none skipped"
                   if p.min_liked_disliked else "")
            ),
            "targets": f"next {p.horizon} interactions after the cutoff",
            "seen_items": "not masked (copying history is measured, not forbidden)",
        }

    def check_catalog(self, catalog: Catalog) -> None:
        super().check_catalog(catalog)
        if self.params.min_liked_disliked and not catalog.interactions["rating"].notna().any():
            raise ConfigError(
                f"task {self.spec.name!r}: min_liked_disliked={self.params.min_liked_disliked} needs ratings to tell "
                f"liked from disliked, but dataset {catalog.name!r} has none; use a dataset with explicit ratings "
                f"or turn the window rule off with --set task.min_liked_disliked=0."
            )

    def build(self, catalog: Catalog) -> TaskData:
        p = self.params
        self.check_catalog(catalog)
        seqs = UserSequences.of(catalog.interactions)
        eligible = seqs.lengths >= p.min_history + 1
        train_users, valid_users, test_users = user_random_split(seqs.users, p.user_fractions, p.split_seed)
        rng = np.random.default_rng(p.split_seed + 1)
        user_index = {int(u): i for i, u in enumerate(seqs.users)}
        rating = catalog.interactions["rating"].to_numpy(np.float64)
        liked_before = np.r_[0, np.cumsum(rating >= p.liked_threshold)]  # NaN (unrated) is neither
        disliked_before = np.r_[0, np.cumsum(rating < p.liked_threshold)]
        skipped: dict[str, int] = {}  # per split, users with no valid cutoff

        def examples(group: np.ndarray, split: str, rng: np.random.Generator = rng):
            idx = np.array([user_index[int(u)] for u in group if eligible[user_index[int(u)]]], dtype=np.int64)
            valid = window_cutoffs(seqs.lengths[idx], seqs.starts[idx], liked_before, disliked_before,
                                   p.min_history, p.history_window, p.min_liked_disliked)
            n_valid = np.diff(valid.indptr)
            skipped[split] = int((n_valid == 0).sum())
            idx, first_valid, n_valid = idx[n_valid > 0], valid.indptr[:-1][n_valid > 0], n_valid[n_valid > 0]
            lengths = seqs.lengths[idx]
            # uniform among the valid cutoffs; with the rule off the valid ones are [min_history, len) and this
            # draw equals rng.integers(min_history, lengths), the rule-free draw of earlier versions
            cut = valid.positions[first_valid + rng.integers(0, n_valid)]
            starts = seqs.starts[idx]
            hist_len = np.minimum(cut, p.history_window)
            histories = seqs.histories(starts + cut - hist_len, hist_len)
            n_targets = np.minimum(lengths - cut, p.horizon)
            target_hist = seqs.histories(starts + cut, n_targets)
            as_of = catalog.interactions["timestamp"].to_numpy(np.int64)[starts + cut]
            users = seqs.users[idx]
            prefix = "" if split == "test" else f"{split}:"  # test keys are bare user ids
            keys = np.array([f"{prefix}{u}" for u in catalog.users["user_id"].to_numpy(dtype=str)[users]])
            attributes = pd.DataFrame({"release_cutoff": pd.to_datetime(as_of, unit="s").strftime("%Y-%m-%d")})
            ex = ExampleSet(keys=keys, users=users, histories=histories, as_of=as_of, attributes=attributes)
            return ex, Targets(target_hist.indptr, target_hist.items), starts + cut, starts + lengths

        valid, valid_t, v_cut, v_end = examples(valid_users, "valid")
        test, test_t, t_cut, t_end = examples(test_users, "test")
        hidden = np.zeros(len(catalog.interactions), dtype=bool)
        for cut_rows, end_rows in ((v_cut, v_end), (t_cut, t_end)):
            lengths = end_rows - cut_rows
            hidden[np.repeat(cut_rows, lengths) + concatenated_ranges(lengths)] = True
        train = catalog.interactions[~hidden].reset_index(drop=True)
        # labelled examples for LLM training: training users cut the same way, by a generator of their own
        train_ex, train_t, _, _ = examples(train_users, "train", np.random.default_rng([p.split_seed, 2]))
        view = catalog.view()
        fit = FitData(view, train, valid, valid_t, train_examples=train_ex, train_targets=train_t, llm=self.llm_for(view))
        stats = {
            "train_users": len(train_users), "valid_examples": len(valid), "test_examples": len(test),
            "ineligible_users": int((~eligible).sum()), "train_interactions": len(train),
            "window_skipped_users": sum(skipped.values()),
            **{f"window_skipped_{split}_users": n for split, n in skipped.items()},
        }
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, stats=stats)
