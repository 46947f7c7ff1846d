"""Deterministic synthetic datasets for tests and benchmarks of the harness itself.

Items have Zipf-like popularity; users and items have latent factors, and each user's items are
drawn with probability proportional to ``popularity * exp(affinity)`` (Gumbel top-k, so no pair
repeats). Ratings follow the same affinity, so a model that learns it beats popularity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.data.catalog import Catalog, build_catalog
from recbench.data.store import DatasetSpec
from recbench.errors import ConfigError

GENERATOR_VERSION = 1  # bump when the output for a given seed changes
MIN_PER_USER = 5
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
OCCUPATIONS = ("student", "engineer", "educator", "artist", "other", "programmer", "retired", "writer")
START = 946_684_800  # 2000-01-01 UTC
DAY = 86_400


def _user_counts(rng: np.random.Generator, n_users: int, n_interactions: int, cap: int) -> np.ndarray:
    """Skewed per-user counts, each in [MIN_PER_USER, cap], summing to exactly ``n_interactions``."""
    weights = rng.lognormal(0.0, 1.0, n_users)
    extra = n_interactions - MIN_PER_USER * n_users
    counts = MIN_PER_USER + np.floor(extra * weights / weights.sum()).astype(np.int64)
    counts = np.minimum(counts, cap)
    while (missing := n_interactions - int(counts.sum())) > 0:  # top up users below the cap
        open_users = np.flatnonzero(counts < cap)
        p = weights[open_users] / weights[open_users].sum()
        picks = rng.choice(open_users, size=missing, p=p)
        np.add.at(counts, picks, 1)
        counts = np.minimum(counts, cap)
    return counts


def _genres(rng: np.random.Generator, factors: np.ndarray) -> list[str]:
    # genres follow the item factors, so item text carries part of the preference signal
    scores = factors @ rng.normal(size=(factors.shape[1], len(GENRES))) + rng.gumbel(size=(len(factors), len(GENRES)))
    order = np.argsort(-scores, axis=1)
    n_genres = rng.integers(1, 4, len(factors))
    return ["|".join(sorted(GENRES[g] for g in row[:n])) for row, n in zip(order, n_genres)]


def make_synthetic(n_users: int, n_items: int, n_interactions: int, seed: int, *, name: str = "synthetic") -> Catalog:
    """A catalog with explicit 1-5 ratings, titles, genres and demographics; same seed, same catalog."""
    # every user leaves 10 items (or a fifth of the catalog) unseen, so rerank tasks can draw negatives
    cap = max(MIN_PER_USER, n_items - max(10, n_items // 5))
    if not MIN_PER_USER * n_users <= n_interactions <= cap * n_users:
        raise ConfigError(
            f"make_synthetic: n_interactions must lie in [{MIN_PER_USER * n_users}, {cap * n_users}] "
            f"for {n_users} users and {n_items} items; got {n_interactions}."
        )
    rng = np.random.default_rng(seed)
    dim = 8
    user_f = rng.normal(size=(n_users, dim)).astype(np.float32)
    item_f = rng.normal(size=(n_items, dim)).astype(np.float32)
    log_pop = -1.2 * np.log(rng.permutation(n_items) + 1.0)  # Zipf exponent 1.2 over a random order
    counts = _user_counts(rng, n_users, n_interactions, cap)

    users = np.repeat(np.arange(n_users), counts)
    items = np.empty(n_interactions, dtype=np.int64)
    offset = 0
    for start in range(0, n_users, 512):  # chunks bound memory at 512 x n_items scores
        stop = min(start + 512, n_users)
        affinity = user_f[start:stop] @ item_f.T / np.sqrt(dim)
        uniform = np.maximum(rng.random(affinity.shape, dtype=np.float32), np.float32(1e-7))  # never log(0)
        gumbel = -np.log(-np.log(uniform))  # float32 Gumbel noise: half the time of rng.gumbel
        keys = log_pop.astype(np.float32) + 1.5 * affinity + gumbel
        order = np.argsort(-keys, axis=1)
        chunk = order[np.arange(n_items) < counts[start:stop, None]]
        items[offset : offset + len(chunk)] = chunk
        offset += len(chunk)

    affinity = np.einsum("ij,ij->i", user_f[users], item_f[items])
    z = (affinity - affinity.mean()) / affinity.std()
    # centred like MovieLens: mostly 3-4, fewer 1s than 5s
    ratings = np.clip(np.rint(3.55 + 0.95 * z + rng.normal(0, 0.45, n_interactions)), 1, 5)
    # time order within a user is random; 15% zero gaps make within-user timestamp ties
    shuffle = np.lexsort((rng.random(n_interactions), users))
    items = items[shuffle]
    ratings = ratings[shuffle]
    span = np.repeat(rng.uniform(30 * DAY, 2 * 365 * DAY, n_users) / counts, counts)  # each user active < 2 years
    gaps = (rng.exponential(1.0, n_interactions) * span).astype(np.int64) + 1
    gaps[rng.random(n_interactions) < 0.15] = 0
    first = np.r_[0, np.cumsum(counts)[:-1]]
    gaps[first] = START + rng.integers(0, 3 * 365 * DAY, n_users)
    steps = np.cumsum(gaps)
    timestamps = steps - np.repeat(steps[first] - gaps[first], counts)

    interactions = pd.DataFrame(
        {"user_id": users + 1, "item_id": items + 1, "timestamp": timestamps, "rating": ratings}
    )
    years = rng.integers(1950, 2006, n_items)
    item_table = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "title": [f"Item {i} ({y})" for i, y in zip(range(1, n_items + 1), years)],
            "year": years,
            "genres": _genres(rng, item_f),
        }
    )
    user_table = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1).astype(str),
            "age": rng.integers(16, 70, n_users),
            "gender": rng.choice(np.array(["F", "M"]), n_users),
            "occupation": rng.choice(np.array(OCCUPATIONS), n_users),
        }
    )
    params = {"n_users": n_users, "n_items": n_items, "n_interactions": n_interactions, "seed": seed}
    source = {"kind": "synthetic", "generator": f"recbench.plugins.datasets.synthetic v{GENERATOR_VERSION}", "params": params}
    return build_catalog(name, interactions, item_table, user_table, source=source)


DATASETS = (
    DatasetSpec(
        "synthetic-tiny",
        "Synthetic: 60 users, 40 items, 1,500 ratings with titles, genres, demographics and timestamp ties.",
        lambda ctx: make_synthetic(60, 40, 1_500, seed=0, name="synthetic-tiny"),
        license="Apache-2.0 (generated)",
    ),
    DatasetSpec(
        "synthetic-ml1m",
        "Synthetic at MovieLens-1M scale: 6,000 users, 3,700 items, 1,000,000 ratings, Zipf popularity, latent tastes.",
        lambda ctx: make_synthetic(6_000, 3_700, 1_000_000, seed=0, name="synthetic-ml1m"),
        license="Apache-2.0 (generated)",
    ),
)


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    for spec in DATASETS:
        register(spec)
