"""``session``: session retrieval of the LangPTune paper (4 history items, 1 upcoming item).

Each user's time-ordered sequence (the catalog's tie rule) is cut into non-overlapping windows of
``history + 1`` consecutive interactions, from the first interaction on. A window whose items are
all distinct is a session: its first ``history`` items are the history, its last the upcoming
item. A window with a repeated item is skipped (counted), a user with fewer interactions than one
window is skipped (counted), and the tail shorter than a window is left out (counted).

Sessions (of all users) are shuffled with ``split_seed`` and cut ``84/8/8`` into train /
validation / test. The whole catalog is ranked from the history alone; history items are masked
(``exclude_seen``). Methods fit on the interactions of training sessions (interactions of
validation and test sessions are withheld; a training row repeating a held-out session's
upcoming item for the same user is dropped and counted) and get the training sessions as labelled
``train_examples``.

The paper used Amazon Movies & TV, whose items have descriptions and reviews; the task runs on
any dataset (``--dataset NAME``, e.g. one added with ``recbench data add`` from the Amazon files
with a ``text`` column), and an item's ``text`` column enters embedders' item text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench.config import option
from recbench.contracts import FULL_CATALOG, FullCatalogContract
from recbench.data.catalog import Catalog
from recbench.examples import ExampleSet, FitData, Targets
from recbench.splits import UserSequences
from recbench.task import Task, TaskData, check_minimums


@dataclass(frozen=True)
class SessionParams:
    k: int = option(20, "ranked list length")
    history: int = option(4, "history items per session (the paper: 4)")
    fractions: tuple[float, ...] = option((0.84, 0.08, 0.08), "train/validation/test fractions of sessions")
    split_seed: int = option(0, "seed of the session shuffle before the split")
    train_fraction: float = option(1.0, "fraction of training sessions kept (a seeded draw; the paper's Figure 3 ablation)")

    def __post_init__(self) -> None:
        check_minimums(self, k=1, history=1, split_seed=0)
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or not np.isclose(sum(self.fractions), 1.0):
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {self.fractions}")


@dataclass(frozen=True)
class Sessions:
    """Cut sessions: ``rows[s]`` are the frame rows of session ``s`` (history then upcoming)."""

    users: np.ndarray  # (n,) user codes
    rows: np.ndarray  # (n, history + 1) frame rows
    counts: dict[str, int]


def cut_sessions(seqs: UserSequences, items: np.ndarray, history: int) -> Sessions:
    """Non-overlapping windows of ``history + 1`` interactions per user, kept when all distinct."""
    width = history + 1
    users, rows = [], []
    counts = {"users_too_short": 0, "windows_with_repeats": 0, "tail_interactions_left_out": 0}
    for user, start, length in zip(seqs.users, seqs.starts, seqs.lengths):
        n_windows = int(length) // width
        if n_windows == 0:
            counts["users_too_short"] += 1
            counts["tail_interactions_left_out"] += int(length)
            continue
        counts["tail_interactions_left_out"] += int(length) - n_windows * width
        window = int(start) + np.arange(n_windows * width).reshape(n_windows, width)
        for w in window:
            if len(np.unique(items[w])) < width:
                counts["windows_with_repeats"] += 1
                continue
            users.append(int(user))
            rows.append(w)
    rows_arr = np.asarray(rows, dtype=np.int64).reshape(-1, width)
    counts["sessions"] = len(rows_arr)
    return Sessions(np.asarray(users, dtype=np.int32), rows_arr, counts)


def split_sessions(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Session indices shuffled with ``seed`` and cut by ``fractions``; each group sorted."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return [np.sort(group) for group in np.split(order, cuts)]


class SessionTask(Task):
    kind = "session"
    description = "Session retrieval: rank the full catalog from 4 history items for the upcoming one (history masked)"
    contract_kind = FULL_CATALOG
    Params = SessionParams

    def contract(self) -> FullCatalogContract:
        return FullCatalogContract(k=self.params.k, exclude_seen=True)

    def split_description(self) -> dict:
        p = self.params
        width = p.history + 1
        return {
            "sessions": f"non-overlapping windows of {width} consecutive interactions per user from the first one on "
                        f"(time order, catalog tie rule); a window with a repeated item is skipped; the tail shorter "
                        f"than {width} is left out",
            "history": f"the first {p.history} items of a session", "target": "the last item of a session",
            "split": f"sessions shuffled with seed {p.split_seed}, cut {list(p.fractions)} into train/valid/test",
            "train_fraction": f"{p.train_fraction} of training sessions kept, drawn with seed {p.split_seed}",
            "train": "interactions of training sessions; rows repeating a held-out upcoming item of the same user dropped",
            "seen_items": "history items excluded from rankings", "candidates": "full catalog",
        }

    def build(self, catalog: Catalog) -> TaskData:
        p = self.params
        frame = catalog.interactions
        seqs = UserSequences.of(frame)
        items = frame["item"].to_numpy(np.int32)
        stamps = frame["timestamp"].to_numpy(np.int64)
        sessions = cut_sessions(seqs, items, p.history)
        train_s, valid_s, test_s = split_sessions(len(sessions.users), p.fractions, p.split_seed)
        if p.train_fraction < 1:
            keep_n = max(1, round(p.train_fraction * len(train_s)))
            train_s = np.sort(np.random.default_rng([p.split_seed, 1]).permutation(train_s)[:keep_n])
        user_ids = catalog.users["user_id"].to_numpy(dtype=str)

        def examples(group: np.ndarray, prefix: str) -> tuple[ExampleSet, Targets]:
            rows = sessions.rows[group]
            users = sessions.users[group]
            hist_rows = rows[:, :-1]
            target_rows = rows[:, -1]
            # the user, the session's first timestamp and its first row: ML-100K has sessions of one user
            # that start in the same second
            keys = np.array([f"{prefix}{user_ids[u]}@{stamps[r]}#{r}" for u, r in zip(users, rows[:, 0])], dtype=object)
            histories = seqs.histories(hist_rows[:, 0], np.full(len(group), p.history))
            ex = ExampleSet(keys=keys.astype(str), users=users, histories=histories, as_of=stamps[target_rows])
            return ex, Targets.single(items[target_rows])

        train, train_t = examples(train_s, "train:")
        valid, valid_t = examples(valid_s, "valid:")
        test, test_t = examples(test_s, "")
        keep = np.zeros(len(frame), dtype=bool)
        keep[sessions.rows[train_s].ravel()] = True
        held = np.concatenate([sessions.rows[valid_s][:, -1], sessions.rows[test_s][:, -1]])
        held_keys = np.unique(frame["user"].to_numpy(np.int64)[held] * catalog.n_items + items[held])
        row_keys = frame["user"].to_numpy(np.int64) * catalog.n_items + items
        repeats = keep & np.isin(row_keys, held_keys)
        keep &= ~repeats
        view = catalog.view()
        fit = FitData(view, frame[keep].reset_index(drop=True), valid, valid_t,
                      train_examples=train, train_targets=train_t, llm=self.llm_for(view))
        stats = {**sessions.counts, "train_sessions": len(train), "valid_sessions": len(valid),
                 "test_sessions": len(test), "train_interactions": int(keep.sum()),
                 "train_rows_dropped_repeating_held_out_target": int(repeats.sum())}
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, stats=stats)
