"""``genre-match``: a synthetic dataset where the next item is a simple function of the history.

Every user watches five distinct titles of one genre, one after another. With the task kind
``learnability`` (``tasks/learnability.py``) the first four are the history and the fifth is the
target among candidates of which exactly one shares the history's genre: a task a small LLM can
learn in minutes on a CPU, and one where an untrained model sits near chance. It exists to prove
that each post-training recipe learns (``benches/learning.py``), not to rank recommenders.
Titles are made-up two-word names with a year; genres are shown beside them in prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.data.catalog import Catalog, build_catalog
from recbench.data.store import DatasetSpec

GENERATOR_VERSION = 1
GENRES = ("Comedy", "Horror", "Western", "Romance", "Sci-Fi", "Documentary", "Animation", "War")
FIRST = ("Silver", "Broken", "Quiet", "Golden", "Hidden", "Crimson", "Distant", "Frozen", "Wild", "Hollow",
         "Burning", "Lonely", "Electric", "Velvet", "Iron", "Paper", "Midnight", "Northern", "Secret", "Last")
SECOND = ("Harbor", "Garden", "Valley", "Mirror", "Road", "Signal", "River", "Engine", "Letter", "Island",
          "Crown", "Canyon", "Shadow", "Station", "Orchard", "Bridge", "Horizon", "Lantern", "Meadow", "Tower")
START = 946_684_800  # 2000-01-01 UTC
HISTORY = 4  # the fifth interaction is the target


def make_genre_match(n_users: int = 1_000, items_per_genre: int = 40, seed: int = 0, *, name: str = "genre-match") -> Catalog:
    """``n_users`` users, each with ``HISTORY + 1`` distinct items of one genre, in time order."""
    rng = np.random.default_rng(seed)
    n_items = items_per_genre * len(GENRES)
    names = [f"{a} {b}" for a in FIRST for b in SECOND]
    order = rng.permutation(len(names))[:n_items]
    genre_of = np.repeat(np.arange(len(GENRES)), items_per_genre)
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1),
        "title": [names[i] for i in order],
        "year": rng.integers(1960, 2006, n_items),
        "genres": [GENRES[g] for g in genre_of],
    })
    taste = rng.integers(0, len(GENRES), n_users)
    users, picked, times = [], [], []
    for user, genre in enumerate(taste):
        pool = np.flatnonzero(genre_of == genre)
        chosen = rng.choice(pool, size=HISTORY + 1, replace=False)
        start = START + int(rng.integers(0, 365 * 86_400))
        users += [user + 1] * len(chosen)
        picked += (chosen + 1).tolist()
        times += [start + 3_600 * step for step in range(len(chosen))]
    interactions = pd.DataFrame({"user_id": users, "item_id": picked, "timestamp": times, "rating": 4.0})
    user_table = pd.DataFrame({"user_id": np.arange(1, n_users + 1).astype(str)})
    params = {"n_users": n_users, "items_per_genre": items_per_genre, "seed": seed}
    source = {"kind": "synthetic", "generator": f"recbench.plugins.datasets.genre_match v{GENERATOR_VERSION}", "params": params}
    return build_catalog(name, interactions, items, user_table, source=source)


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    register(DatasetSpec(
        "genre-match",
        "Synthetic learnability data: 1,000 users x 5 titles of one genre (8 genres x 40 made-up titles).",
        lambda ctx: make_genre_match(),
        license="Apache-2.0 (generated)",
    ))
