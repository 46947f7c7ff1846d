"""``artwork``: which of a title's artworks will this user engage with (the Netflix artwork paper).

An example is a user-title engagement from the dataset's ``artwork_log`` table: the user's last
``max_history`` interactions strictly before it, the title (``attributes.title_item``), and the
title's artworks in option order as candidates (codes into the ``artworks`` table, padded with
``-1`` to ``max_options``). The target is the engaged artwork. Train, validation and test hold
distinct user-title pairs, drawn at random with ``split_seed``; a user or a title may recur
across splits, a pair never does.

Metrics: accuracy, IPS (``hit / propensity``: the logged propensity, uniform ``1/m`` for the
simulator) and SNIPS; :meth:`ArtworkTask.report` adds accuracy by ground-truth option number
(the paper's Figure 2; the leaderboard plots it), and :meth:`ArtworkTask.ceiling` the simulator's Bayes-optimal
values. Methods see only the ``artworks`` columns in :data:`METHOD_COLUMNS`: the simulator's facet
labels, appeals and choice probabilities stay on the runner's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recbench.config import option
from recbench.contracts import CANDIDATES, CandidatesContract
from recbench.data.artwork_sim import history_bounds
from recbench.data.catalog import Catalog
from recbench.errors import ConfigError, TargetLeakError
from recbench.examples import CatalogView, ExampleSet, FitData, Targets
from recbench.hashing import hash_tables, stable_hash
from recbench.llm.interface import ArtworkChoice
from recbench.splits import UserSequences
from recbench.task import Task, TaskData, check_minimums

METHOD_COLUMNS = ("artwork_id", "item", "option", "caption", "image")  # the artwork columns a method may read
PRESETS = {"smoke": (4_000, 500, 2_000), "paper": (None, 1_000, 5_000)}  # train (None: the rest), valid, test


@dataclass(frozen=True)
class ArtworkParams:
    preset: Literal["smoke", "paper"] = option(
        "smoke", "split sizes: smoke = 4,000/500/2,000 train/valid/test pairs; paper = every other pair/1,000/5,000")
    n_train: int | None = option(None, "training user-title pairs, overriding the preset (a pair logged twice gives two examples)")
    n_valid: int | None = option(None, "validation user-title pairs, overriding the preset")
    n_test: int | None = option(None, "test user-title pairs, overriding the preset (every logged choice of a pair is an example)")
    split_seed: int = option(0, "seed of the shuffle that assigns user-title pairs to splits")
    max_history: int = option(50, "most recent interactions (strictly before the engagement) shown per example")
    max_options: int = option(40, "candidate slots per example; a title with more artworks is an error")

    def __post_init__(self) -> None:
        check_minimums(self, n_train=1, n_valid=1, n_test=1, split_seed=0, max_history=0, max_options=2)


class ArtworkTask(Task):
    kind = "artwork"
    description = "Pick the artwork a user engages with among a title's 4-40+ captioned options"
    contract_kind = CANDIDATES
    candidate_table = "artworks"
    Params = ArtworkParams
    llm_interface = ArtworkChoice

    def contract(self) -> CandidatesContract:
        return CandidatesContract(k=self.params.max_options, candidate_table=self.candidate_table, id_column="artwork_id")

    def sizes(self) -> tuple[int | None, int, int]:
        train, valid, test = PRESETS[self.params.preset]
        p = self.params
        return (p.n_train if p.n_train is not None else train, p.n_valid if p.n_valid is not None else valid,
                p.n_test if p.n_test is not None else test)

    def split_description(self) -> dict[str, Any]:
        train, valid, test = self.sizes()
        return {
            "split": "random user-title pairs, disjoint across train/valid/test",
            "sizes": {"train": train if train is not None else "rest", "valid": valid, "test": test},
            "history": f"last {self.params.max_history} interactions strictly before the engagement",
            "candidates": "the title's artworks in option order, padded with -1",
            "propensity": "logged when the data has it, else uniform 1/m",
        }

    def protocol(self, catalog: Catalog) -> dict[str, Any]:
        # the catalog's content hash covers interactions only; the artwork tables are the task's data
        protocol = {k: v for k, v in super().protocol(catalog).items() if k != "fingerprint"}
        protocol["artwork_tables_hash"] = artwork_tables_hash(catalog)
        protocol["fingerprint"] = stable_hash(protocol)
        return protocol

    def build(self, catalog: Catalog) -> TaskData:
        artworks, log = _artwork_tables(catalog, self.spec.name)
        pair = log.groupby(["user", "item"], sort=True).ngroup().to_numpy()
        n_pairs = int(pair.max()) + 1 if len(pair) else 0
        n_train, n_valid, n_test = self.sizes()
        rest = n_train is None
        n_train = n_pairs - n_valid - n_test if rest else n_train
        if n_train < 1 or n_train + n_valid + n_test > n_pairs:
            asked = f"{n_valid:,} valid + {n_test:,} test pairs + at least 1 train pair" if rest else \
                f"{n_train:,} train + {n_valid:,} valid + {n_test:,} test pairs"
            raise ConfigError(
                f"task {self.spec.name!r} (preset {self.params.preset!r}): {asked} do not fit the {n_pairs:,} user-title "
                f"pairs of dataset {catalog.name!r}; set sizes that sum to at most {n_pairs:,}, e.g. --set task.n_train="
                f"{max(1, n_pairs * 6 // 10)} --set task.n_valid={max(1, n_pairs // 10)} --set task.n_test={max(1, n_pairs * 3 // 10)}."
            )
        split_of_pair = np.full(n_pairs, -1)
        order = np.random.default_rng(self.params.split_seed).permutation(n_pairs)
        split_of_pair[order[:n_test]] = 0
        split_of_pair[order[n_test : n_test + n_valid]] = 1
        split_of_pair[order[n_test + n_valid : n_test + n_valid + n_train]] = 2
        builder = _ExampleBuilder(catalog, artworks, self.params)
        (test, test_t), (valid, valid_t), (train, train_t) = (
            builder.build(log[split_of_pair[pair] == s]) for s in (0, 1, 2)
        )
        view = CatalogView(catalog.name, catalog.items, catalog.users,
                           {"artworks": artworks[[c for c in METHOD_COLUMNS if c in artworks]]})
        fit = FitData(view, catalog.interactions, valid, valid_t, train_examples=train, train_targets=train_t,
                      llm=self.llm_for(view))
        test_log = log[split_of_pair[pair] == 0]
        outcome = {"propensity": test_log["propensity"].to_numpy(np.float64)}
        if "reward" in test_log:
            outcome["reward"] = test_log["reward"].to_numpy(np.float64)
        if "p_best" in test_log:
            outcome["bayes_p_best"] = test_log["p_best"].to_numpy(np.float64)  # runner-side only: for ceiling()
        # a pair logged several times gives one example per logged choice, so examples can outnumber pairs
        stats = {"available_pairs": n_pairs, "train_pairs": n_train, "valid_pairs": n_valid, "test_pairs": n_test,
                 "train_examples": len(train), "valid_examples": len(valid), "test_examples": len(test),
                 "test_random_accuracy": round(float(np.mean(1.0 / test.attributes["n_options"])), 4)}
        return TaskData(fit=fit, test_inputs=test, test_targets=test_t, outcome=outcome, stats=stats)

    def audit(self, data: TaskData) -> None:
        """Pairs disjoint across splits, histories strictly before each engagement, no simulator
        internals or engagement logs among the tables a method sees."""
        fit = data.fit
        splits = {"train": fit.train_examples, "valid": fit.valid, "test": data.test_inputs}
        pairs = {name: set(zip(ex.users.tolist(), ex.attributes["title_item"].tolist())) for name, ex in splits.items() if ex is not None}
        for first, second in (("test", "train"), ("test", "valid"), ("valid", "train")):
            shared = pairs[first] & pairs.get(second, set())
            if shared:
                user, item = sorted(shared)[0]
                raise TargetLeakError(
                    f"{len(shared)} user-title pair(s) are in both the {first} and {second} examples (first: user code "
                    f"{user}, title code {item}); the artwork task's build() must keep pairs disjoint."
                )
        for name, examples in splits.items():
            if examples is None:
                continue
            late = examples.histories.timestamps >= np.repeat(examples.as_of, examples.histories.lengths)
            if late.any():
                row = int(examples.histories.row_ids()[np.argmax(late)])
                raise TargetLeakError(
                    f"{name} example {examples.keys[row]!r} has history interactions at or after its engagement time; "
                    "histories must hold only earlier interactions."
                )
        extra = set(fit.catalog.tables) - {"artworks"}
        columns = set(fit.catalog.tables.get("artworks", pd.DataFrame()).columns) - set(METHOD_COLUMNS)
        if extra or columns:
            raise TargetLeakError(
                f"methods would see tables {sorted(extra)} and artwork columns {sorted(columns)}: engagement logs and "
                f"simulator internals must stay with the runner; only {METHOD_COLUMNS} may reach methods."
            )

    def ceiling(self, data: TaskData) -> dict[str, np.ndarray] | None:
        if "bayes_p_best" not in data.outcome:
            return None
        p_best = data.outcome["bayes_p_best"]
        return {"accuracy": p_best, "ips": p_best / data.outcome["propensity"]}

    def report(self, data: TaskData, ranked: np.ndarray, per_example: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """Accuracy by the ground-truth option number (the paper's Figure 2), as a table; leaderboards plot it."""
        options = data.fit.catalog.tables["artworks"]["option"].to_numpy()
        truth = options[data.test_targets.items]
        top = ranked[:, 0]
        hits = top == data.test_targets.items
        chance = 1.0 / data.test_inputs.attributes["n_options"].to_numpy(np.float64)
        picked = pd.Series(options[top[top >= 0]]).value_counts()
        rows = []
        for number in np.unique(truth):
            mask = truth == number
            rows.append({"option": int(number), "count": int(mask.sum()), "accuracy": round(float(hits[mask].mean()), 4),
                         "chance": round(float(chance[mask].mean()), 4),
                         "predicted_share": round(float(picked.get(number, 0) / len(top)), 4)})
        return {"accuracy_by_option": rows}  # the leaderboard draws it (recbench.leaderboard_sections.option_plot)


class _ExampleBuilder:
    """Turns ``artwork_log`` rows into an :class:`ExampleSet` and its :class:`Targets`."""

    def __init__(self, catalog: Catalog, artworks: pd.DataFrame, params: ArtworkParams) -> None:
        self.catalog, self.params = catalog, params
        self.sequences = UserSequences.of(catalog.interactions)
        order = np.lexsort((artworks["option"].to_numpy(), artworks["item"].to_numpy()))
        self.codes_by_title = order
        items_sorted = artworks["item"].to_numpy()[order]
        self.title_start = np.searchsorted(items_sorted, np.arange(catalog.n_items), side="left")
        self.n_options = np.bincount(items_sorted, minlength=catalog.n_items)
        if self.n_options.max(initial=0) > params.max_options:
            item = int(np.argmax(self.n_options))
            raise ConfigError(
                f"title {catalog.items['item_id'].iloc[item]!r} has {self.n_options[item]} artworks, more than "
                f"max_options={params.max_options}; raise it with --set task.max_options={self.n_options[item]}."
            )

    def build(self, rows: pd.DataFrame) -> tuple[ExampleSet, Targets]:
        users, items = rows["user"].to_numpy(np.int32), rows["item"].to_numpy(np.int64)
        as_of = rows["timestamp"].to_numpy(np.int64)
        start, stop = history_bounds(self.catalog.interactions, users, as_of, self.params.max_history)
        m = self.n_options[items]
        slots = np.arange(self.params.max_options)
        take = np.minimum(self.title_start[items][:, None] + slots, len(self.codes_by_title) - 1)
        candidates = np.where(slots < m[:, None], self.codes_by_title[take], -1).astype(np.int64)
        user_ids = self.catalog.users["user_id"].to_numpy(dtype=str)[users]
        item_ids = self.catalog.items["item_id"].to_numpy(dtype=str)[items]
        examples = ExampleSet(
            keys=np.array([f"{u}|{i}" for u, i in zip(user_ids, item_ids)], dtype=object),
            users=users,
            histories=self.sequences.histories(start, stop - start),
            as_of=as_of,
            candidates=candidates,
            attributes=pd.DataFrame({"title_item": items.astype(np.int32), "n_options": m.astype(np.int32)}),
        )
        return examples, Targets.single(rows["chosen"].to_numpy(np.int64))


def _artwork_tables(catalog: Catalog, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [t for t in ("artworks", "artwork_log") if t not in catalog.tables]
    if missing:
        raise ConfigError(
            f"task {task!r} needs the tables 'artworks' and 'artwork_log', which dataset {catalog.name!r} lacks "
            f"({missing}); use an artwork dataset (`recbench list datasets`: artwork-ml100k, or real logs loaded "
            "per docs/artwork-logs.md)."
        )
    return catalog.tables["artworks"], catalog.tables["artwork_log"]


def artwork_tables_hash(catalog: Catalog) -> str:
    """SHA-256 (16 hex) of the artworks and the log in recbench's canonical table form (no raw float
    bytes: the same simulation hashes alike on any machine), so a regenerated simulation is a new protocol."""
    tables = {name: catalog.tables.get(name, pd.DataFrame()) for name in ("artworks", "artwork_log")}
    return hash_tables(tables).hexdigest()[:16]
