"""Artwork datasets: the simulator on MovieLens-100K (``artwork-ml100k``) and on a tiny synthetic
catalog for tests (``artwork-tiny``), plus ``recbench data info`` statistics for any artwork dataset.

The simulator is documented in ``docs/artwork-simulator.md`` (:mod:`recbench.data.artwork_sim`);
real logs load through :mod:`recbench.plugins.datasets.artwork_logs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.data import artwork_captions, artwork_sim
from recbench.data.catalog import Catalog
from recbench.data.store import DatasetSpec, FetchContext, get_catalog
from recbench.hashing import stable_hash

ML100K_CONFIG = artwork_sim.SimulatorConfig()
TINY_CONFIG = artwork_sim.SimulatorConfig(seed=0)
TINY_SYNTHETIC = {"n_users": 150, "n_items": 80, "n_interactions": 6_000, "seed": 3}
OPTION_BINS = ((1, 5), (6, 9), (10, 19), (20, 39), (40, None))


def _cache_key(config: artwork_sim.SimulatorConfig, base: str) -> str:
    # the simulator's source is part of the key: editing it never reuses a stale simulation
    code = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (artwork_sim, artwork_captions)))
    return f"{base}|{stable_hash(dataclasses.asdict(config))}|{code.hexdigest()[:12]}"


def load_artwork_ml100k(ctx: FetchContext) -> Catalog:
    from recbench.plugins.datasets.movielens import DATASETS

    (ml100k,) = [spec for spec in DATASETS if spec.name == "ml-100k"]
    return artwork_sim.simulate(get_catalog(ml100k, quiet=ctx.quiet), ML100K_CONFIG, "artwork-ml100k")


def load_artwork_tiny(ctx: FetchContext) -> Catalog:
    from recbench.plugins.datasets.synthetic import make_synthetic

    return artwork_sim.simulate(make_synthetic(**TINY_SYNTHETIC, name="synthetic"), TINY_CONFIG, "artwork-tiny")


def _spread(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    q = np.percentile(values, [0, 50, 90, 100])
    return {"min": float(q[0]), "median": float(q[1]), "p90": float(q[2]), "max": float(q[3])}


def artwork_info(catalog: Catalog) -> dict[str, Any]:
    """Option counts, caption lengths, chosen-option counts and (for simulated data) the ceiling."""
    artworks, log = catalog.tables.get("artworks"), catalog.tables.get("artwork_log")
    if artworks is None or log is None:
        return {}
    options = artworks.groupby("item").size()
    per_title = options.to_numpy()
    per_example = options.reindex(log["item"]).to_numpy()
    bins = {}
    for lo, hi in OPTION_BINS:
        label = f"{lo}+" if hi is None else f"{lo}-{hi}"
        bins[label] = int(((per_title >= lo) & (per_title <= (hi or per_title.max()))).sum())
    chosen_option = artworks["option"].to_numpy()[log["chosen"].to_numpy()]
    info: dict[str, Any] = {
        "artwork_examples": len(log),
        "artworks": len(artworks),
        "options_per_title": {**_spread(per_title), "titles": len(per_title), "histogram": bins},
        "options_per_example": _spread(per_example),
        "caption_words": _spread(artworks["caption"].str.split().str.len().to_numpy()),
        "chosen_option_counts": {int(k): int(v) for k, v in pd.Series(chosen_option).value_counts().sort_index().items()},
        "random_accuracy": round(float(np.mean(1.0 / per_example)), 4),
    }
    if "p_best" in log:
        info["ceiling"] = {
            "accuracy": round(float(log["p_best"].mean()), 4),
            "ips": round(float((log["p_best"] / log["propensity"]).mean()), 4),
            "note": "Bayes-optimal expected values over every example (the task reports its test split's)",
        }
    return info


DATASETS = (
    DatasetSpec(
        "artwork-ml100k",
        "Artwork personalization proxy (simulated): MovieLens-100K histories, 4-40 captioned artworks per title, "
        "choices from a documented preference model (docs/artwork-simulator.md).",
        load_artwork_ml100k,
        homepage="https://grouplens.org/datasets/movielens/100k/",
        license="MovieLens terms for the ratings; simulated artworks and choices Apache-2.0",
        cache_key=lambda: _cache_key(ML100K_CONFIG, "ml-100k"),
        info=artwork_info,
    ),
    DatasetSpec(
        "artwork-tiny",
        "Artwork simulator on a tiny synthetic catalog (150 users, 80 titles, ~5,000 choices), for tests.",
        load_artwork_tiny,
        license="Apache-2.0 (generated)",
        cache_key=lambda: _cache_key(TINY_CONFIG, stable_hash(TINY_SYNTHETIC)),
        info=artwork_info,
    ),
)


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    for spec in DATASETS:
        register(spec)
