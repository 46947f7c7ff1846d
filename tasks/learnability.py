"""``learnability``: pick the one candidate that shares the genre of the user's four watched titles.

Built for datasets like ``genre-match`` (every user's first four interactions share a genre, the
fifth is the target): each example shows the four, and ``n_candidates`` candidates: the target
plus negatives of other genres, one per genre while genres last (seeded), in a seeded order. Users
are split at random into train/validation/test (labelled training examples for LLM recipes;
classic methods fit on every training user's interactions and the other users' histories). The
answer is a function of what the prompt shows, so a model that learns reaches 1.0; chance is
``1 / n_candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench.config import option
from recbench.contracts import CANDIDATES, CandidatesContract
from recbench.data.catalog import Catalog
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.interface import TitleChoice
from recbench.splits import UserSequences, user_random_split
from recbench.task import Task, TaskData


@dataclass(frozen=True)
class LearnabilityParams:
    n_candidates: int = option(5, "candidates per example: the target plus negatives of other genres")
    user_fractions: tuple[float, ...] = option((0.6, 0.2, 0.2), "train/validation/test fractions of users")
    split_seed: int = option(0, "seed of the user split, the negatives and the candidate order")


class LearnabilityTask(Task):
    kind = "learnability"
    description = "Pick the candidate whose genre matches the user's history (a task small LLMs can learn)"
    contract_kind = CANDIDATES
    Params = LearnabilityParams
    llm_interface = TitleChoice

    def contract(self) -> CandidatesContract:
        return CandidatesContract(k=self.params.n_candidates)

    def split_description(self) -> dict:
        p = self.params
        return {"split": f"user-level random {list(p.user_fractions)}, seed {p.split_seed}",
                "history": "every interaction before the last", "target": "the last interaction",
                "candidates": f"target + {p.n_candidates - 1} negatives of other genres than the target's"}

    def build(self, catalog: Catalog) -> TaskData:
        p = self.params
        genre = catalog.items["genres"].astype(str).to_numpy()
        genres = np.unique(genre)
        if len(genres) < 2 or p.n_candidates < 2:
            raise ConfigError(f"task {self.spec.name!r} needs items of at least 2 genres and n_candidates >= 2.")
        seqs = UserSequences.of(catalog.interactions)
        train_u, valid_u, test_u = user_random_split(seqs.users, p.user_fractions, p.split_seed)
        rng = np.random.default_rng(p.split_seed)
        by_genre = {g: np.flatnonzero(genre == g) for g in genres}
        index = {int(u): i for i, u in enumerate(seqs.users)}
        items = catalog.interactions["item"].to_numpy(np.int32)
        stamps = catalog.interactions["timestamp"].to_numpy(np.int64)
        user_ids = catalog.users["user_id"].to_numpy(dtype=str)

        def examples(group: np.ndarray, prefix: str) -> tuple[ExampleSet, Targets]:
            idx = np.array([index[int(u)] for u in np.sort(group) if seqs.lengths[index[int(u)]] >= 2], dtype=np.int64)
            starts, lengths = seqs.starts[idx], seqs.lengths[idx]
            target_rows = starts + lengths - 1
            targets = items[target_rows]
            candidates = np.empty((len(idx), p.n_candidates), dtype=np.int32)
            for row, target in enumerate(targets):
                others = [g for g in genres if g != genre[target]]
                picks = rng.choice(len(others), size=p.n_candidates - 1, replace=len(others) < p.n_candidates - 1)
                negatives = [int(rng.choice(by_genre[others[g]])) for g in picks]
                candidates[row] = rng.permutation([int(target), *negatives])
            users = seqs.users[idx]
            ex = ExampleSet(keys=np.array([f"{prefix}{u}" for u in user_ids[users]]), users=users,
                            histories=seqs.histories(starts, lengths - 1), as_of=stamps[target_rows], candidates=candidates)
            return ex, Targets.single(targets)

        train, train_t = examples(train_u, "train:")
        valid, valid_t = examples(valid_u, "valid:")
        test, test_t = examples(test_u, "")
        hidden = np.zeros(len(items), dtype=bool)
        for group in (valid_u, test_u):
            for u in group:
                i = index[int(u)]
                hidden[seqs.starts[i] + seqs.lengths[i] - 1] = True
        view = catalog.view()
        fit = FitData(view, catalog.interactions[~hidden].reset_index(drop=True), valid, valid_t,
                      train_examples=train, train_targets=train_t, llm=self.llm_for(view))
        stats = {"train_examples": len(train), "valid_examples": len(valid), "test_examples": len(test),
                 "chance_accuracy": round(1 / p.n_candidates, 4)}
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, stats=stats)

    def ceiling(self, data: TaskData) -> dict[str, np.ndarray]:
        """The answer is a function of the prompt: a policy that knows the rule is right on every example."""
        ones = np.ones(len(data.test_inputs))
        return {"accuracy": ones, "mrr@5": ones}
