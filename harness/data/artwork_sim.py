"""The artwork simulator: a public proxy for the artwork-personalization task, built on real histories.

Documented in ``docs/artwork-simulator.md``. In short, from a catalog with ratings:

1. **Facets.** Every title gets a facet set: its genres plus one or two tones, a setting, a
   relationship and an era, drawn from distributions that lean on its genres (and its year).
2. **Artworks.** Title ``i`` gets ``m_i`` artworks, ``m_i = clip(floor(4 exp(E + b q_i)), 4, 40)``
   with ``E ~ Exponential(option_spread)`` and ``q_i`` the title's popularity quantile: most
   titles have a few options, popular ones many. Each artwork emphasizes a primary facet of the
   title (each facet covered once before any repeats), sometimes a secondary one, has a
   user-independent appeal ``~ N(0, appeal_scale)``, and a caption (:mod:`artwork_captions`).
   Option numbers are a random order of the title's artworks.
3. **Examples.** Every user-title rating with at least ``min_history`` strictly earlier
   interactions is an example; its history is the user's last ``history_window`` interactions
   strictly before the rating.
4. **Choice.** The user's affinity for facet ``f`` is the smoothed log-lift of ``f`` among the
   history's liked items (rating >= ``like_threshold``) over its catalog-wide rate. Artwork ``a``
   of the title has utility ``aff[f1(a)] + 0.5 aff[f2(a)] + tilt(user, f1(a)) + appeal(a)``, where
   the tilt leans older users toward classic facets and adds a seeded offset per occupation. The
   engaged artwork is drawn from ``softmax(utility / temperature)``; logging is uniform
   (propensity ``1/m``).

Everything a choice depends on is visible to a method (the history, the demographics, the
captions) except the facet labels and appeals, which the captions only describe; so the
Bayes-optimal policy (pick the most probable artwork) is a ceiling a learner can approach.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbench.config import option
from recbench.data.artwork_captions import FACETS, GENRE_FACETS, title_style, write_caption
from recbench.data.catalog import Catalog
from recbench.errors import ConfigError

SIM_VERSION = 1  # bump when the output for a given seed changes
SECONDARY_WEIGHT = 0.5
SMOOTHING = 3.0  # pseudo-count of liked items at the catalog-wide facet rate
FACET_INDEX = {f: i for i, f in enumerate(FACETS)}
HIDDEN_GROUPS = ("tone:", "setting:", "bond:")

# how strongly each genre pulls a title's hidden facets (added to a base weight of 1)
GENRE_LEANS: dict[str, dict[str, float]] = {
    "Action": {"tone:epic": 2, "tone:suspenseful": 2, "setting:city": 3, "bond:rivals": 3, "bond:team": 2},
    "Adventure": {"tone:epic": 4, "setting:wilderness": 3, "setting:sea": 2, "setting:abroad": 3, "bond:team": 2, "bond:friends": 2},
    "Animation": {"tone:lighthearted": 3, "bond:family": 2, "bond:friends": 2},
    "Children's": {"tone:lighthearted": 4, "bond:family": 4, "bond:friends": 3, "setting:small-town": 2},
    "Comedy": {"tone:lighthearted": 4, "bond:friends": 2, "bond:family": 2, "setting:city": 2, "setting:small-town": 2},
    "Crime": {"tone:dark": 3, "tone:suspenseful": 2, "setting:city": 4, "bond:rivals": 3},
    "Documentary": {"tone:melancholic": 1, "setting:abroad": 2, "bond:loner": 1},
    "Drama": {"tone:melancholic": 3, "tone:tender": 2, "bond:family": 3, "setting:small-town": 2},
    "Fantasy": {"tone:epic": 3, "setting:wilderness": 2, "setting:abroad": 2, "bond:friends": 2},
    "Film-Noir": {"tone:dark": 5, "setting:city": 5, "bond:loner": 3},
    "Horror": {"tone:dark": 4, "tone:suspenseful": 3, "setting:small-town": 2, "setting:wilderness": 2, "bond:loner": 2},
    "Musical": {"tone:lighthearted": 3, "tone:tender": 2, "setting:city": 2, "bond:couple": 2},
    "Mystery": {"tone:suspenseful": 3, "tone:dark": 2, "setting:small-town": 2, "bond:loner": 2},
    "Romance": {"tone:tender": 4, "tone:melancholic": 1, "bond:couple": 5, "setting:abroad": 2},
    "Sci-Fi": {"setting:space": 5, "tone:epic": 2, "tone:dark": 1, "bond:team": 2},
    "Thriller": {"tone:suspenseful": 4, "tone:dark": 2, "setting:city": 3, "bond:rivals": 2, "bond:loner": 2},
    "War": {"tone:epic": 2, "tone:melancholic": 2, "tone:dark": 2, "setting:abroad": 3, "bond:team": 4},
    "Western": {"tone:epic": 2, "setting:wilderness": 5, "bond:loner": 3, "bond:rivals": 2},
}  # fmt: skip
PERIOD_GENRES = frozenset({"War", "Western", "Film-Noir"})
# older users lean toward these facets (positive) and away from the negative ones
AGE_LEANING = {
    "era:period": 1.0, "Film-Noir": 1.0, "Western": 1.0, "Drama": 0.5, "War": 0.5, "tone:tender": 0.5,
    "tone:melancholic": 0.5, "Horror": -1.0, "Action": -0.5, "Sci-Fi": -0.5, "Animation": -0.5, "Fantasy": -0.5,
    "tone:epic": -0.5, "setting:space": -0.5,
}  # fmt: skip


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = option(0, "seed of every random draw of the simulator")
    temperature: float = option(0.25, "softmax temperature of choices: lower is less noisy, higher ceiling")
    appeal_scale: float = option(0.2, "standard deviation of each artwork's user-independent appeal")
    age_tilt: float = option(0.3, "utility shift per standard deviation of age along AGE_LEANING")
    occupation_tilt: float = option(0.2, "standard deviation of the seeded per-occupation facet offsets")
    option_spread: float = option(0.6, "scale of the exponential that spreads option counts above 4")
    popularity_boost: float = option(0.8, "how much more art popular titles get (log scale, top vs bottom)")
    min_options: int = option(4, "fewest artworks per title")
    max_options: int = option(40, "most artworks per title")
    history_window: int = option(50, "interactions before the rating that shape the choice")
    min_history: int = option(5, "ratings with fewer earlier interactions are not examples")
    like_threshold: float = option(4.0, "ratings at or above this count as liked")

    def __post_init__(self) -> None:
        if not 2 <= self.min_options <= self.max_options:
            raise ConfigError(f"artwork simulator: need 2 <= min_options <= max_options; got {self.min_options}, {self.max_options}.")
        if self.temperature <= 0:
            raise ConfigError(f"artwork simulator: temperature must be positive; got {self.temperature}.")


def _rng(config: SimulatorConfig, stage: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stage])  # one stream per stage: changing one leaves the rest


def item_facets(items: pd.DataFrame, config: SimulatorConfig) -> np.ndarray:
    """``(n_items, n_facets)`` bool: each title's genres plus its drawn tones, setting, bond and era."""
    rng = _rng(config, 1)
    genre_lists = [[g for g in str(gs).split("|") if g in FACET_INDEX] for gs in items["genres"].fillna("")]
    out = np.zeros((len(items), len(FACETS)), dtype=bool)
    for row, names in enumerate(genre_lists):
        out[row, [FACET_INDEX[g] for g in names]] = True
    leans = np.array([[GENRE_LEANS[g].get(f, 0.0) for f in FACETS] for g in GENRE_FACETS])
    # Gumbel top-k: each row's draws without replacement, proportional to 1 + the genres' leans
    keys = np.log1p(out[:, : len(GENRE_FACETS)] @ leans) + rng.gumbel(size=out.shape)
    second_tone = rng.random(len(items)) < 0.3  # some titles mix two tones
    for prefix in HIDDEN_GROUPS:
        group = np.array([i for i, f in enumerate(FACETS) if f.startswith(prefix)])
        order = group[np.argsort(-keys[:, group], axis=1)]
        out[np.arange(len(items)), order[:, 0]] = True
        if prefix == "tone:":
            out[np.flatnonzero(second_tone), order[second_tone, 1]] = True
    years = pd.to_numeric(items["year"], errors="coerce").to_numpy(dtype=float)
    period_genre = np.array([bool(PERIOD_GENRES & set(names)) for names in genre_lists])
    period = (years < 1965) | (period_genre & (rng.random(len(items)) < 0.5))
    out[np.arange(len(items)), np.where(period, FACET_INDEX["era:period"], FACET_INDEX["era:modern"])] = True
    return out


def option_counts(popularity: np.ndarray, config: SimulatorConfig) -> np.ndarray:
    """Artworks per title: skewed (most titles few, some many), more for popular titles."""
    rng = _rng(config, 2)
    quantile = pd.Series(popularity).rank(pct=True, method="average").to_numpy()
    spread = rng.exponential(config.option_spread, len(popularity)) + config.popularity_boost * quantile
    return np.clip(np.floor(4.0 * np.exp(spread)), config.min_options, config.max_options).astype(np.int64)


def make_artworks(catalog: Catalog, facets: np.ndarray, config: SimulatorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``artworks`` table (what methods see) and the ``artwork_truth`` table (simulator-only), row-aligned."""
    rng = random.Random(f"recbench-artworks-{config.seed}")  # python's sampler: 20x faster per caption than numpy's
    popularity = np.bincount(catalog.interactions["item"].to_numpy(), minlength=catalog.n_items)
    counts = option_counts(popularity, config)
    rows, truth = [], []
    for item, (item_id, title, m) in enumerate(zip(catalog.items["item_id"], catalog.items["title"], counts)):
        pool = [FACETS[f] for f in np.flatnonzero(facets[item])]
        primary = (rng.sample(pool, len(pool)) + rng.choices(pool, k=max(0, m - len(pool))))[:m]
        style = title_style(rng)
        for option_number, slot in enumerate(rng.sample(range(m), m), start=1):
            facet = primary[slot]
            others = [f for f in pool if f != facet]
            secondary = rng.choice(others) if others and rng.random() < 0.6 else None
            caption = write_caption(str(title), style, facet, secondary, rng)
            rows.append((f"{item_id}-a{option_number:02d}", item, option_number, caption))
            truth.append((facet, secondary or ""))
    artworks = pd.DataFrame(rows, columns=["artwork_id", "item", "option", "caption"])
    artworks = artworks.astype({"item": np.int32, "option": np.int32})
    truth = pd.DataFrame(truth, columns=["facet", "secondary_facet"])
    truth["appeal"] = _rng(config, 3).normal(0.0, config.appeal_scale, len(truth))
    return artworks, truth


def eligible_examples(catalog: Catalog, config: SimulatorConfig) -> pd.DataFrame:
    """Every first (user, item) rating with at least ``min_history`` strictly earlier interactions."""
    inter = catalog.interactions
    start, stop = history_bounds(inter, inter["user"].to_numpy(), inter["timestamp"].to_numpy(), None)
    earlier = stop - start
    first = ~inter.duplicated(["user", "item"], keep="first").to_numpy()
    keep = first & (earlier >= config.min_history)
    return inter.loc[keep, ["user", "item", "timestamp"]].reset_index(drop=True)


def history_bounds(inter: pd.DataFrame, users: np.ndarray, timestamps: np.ndarray, window: int | None):
    """Row range ``[start, stop)`` of each request's history in the sorted interactions: the user's
    interactions strictly before the timestamp, at most the last ``window`` of them."""
    t0 = int(inter["timestamp"].min()) if len(inter) else 0
    keys = (inter["user"].to_numpy(np.int64) << 34) | (inter["timestamp"].to_numpy(np.int64) - t0)
    users = np.asarray(users, np.int64)
    stop = np.searchsorted(keys, (users << 34) | np.maximum(np.asarray(timestamps, np.int64) - t0, 0), side="left")
    first = np.searchsorted(keys, users << 34, side="left")
    start = first if window is None else np.maximum(first, stop - window)
    return start, stop


def affinities(catalog: Catalog, facets: np.ndarray, examples: pd.DataFrame, config: SimulatorConfig) -> np.ndarray:
    """``(n_examples, n_facets + 1)`` smoothed log-lift of each facet among liked history items (last column 0)."""
    inter = catalog.interactions
    rating = inter["rating"].to_numpy(np.float64)
    liked = np.where(np.isnan(rating), 1.0, rating >= config.like_threshold)
    profile = facets[inter["item"].to_numpy()] * liked[:, None]
    cum = np.vstack([np.zeros((1, len(FACETS))), np.cumsum(profile, axis=0)])
    cum_liked = np.concatenate([[0.0], np.cumsum(liked)])
    base = np.maximum(profile.sum(axis=0) / max(liked.sum(), 1.0), 1e-3)
    start, stop = history_bounds(inter, examples["user"].to_numpy(), examples["timestamp"].to_numpy(), config.history_window)
    counts = cum[stop] - cum[start]
    n_liked = (cum_liked[stop] - cum_liked[start])[:, None]
    lift = np.log((counts + SMOOTHING * base) / (n_liked + SMOOTHING)) - np.log(base)
    return np.hstack([lift, np.zeros((len(examples), 1))])


def user_tilts(users: pd.DataFrame, config: SimulatorConfig) -> np.ndarray:
    """``(n_users, n_facets + 1)`` demographic utility shifts; zero where a demographic is unknown."""
    tilt = np.zeros((len(users), len(FACETS) + 1))
    if "age" in users:
        age = pd.to_numeric(users["age"], errors="coerce").to_numpy(dtype=float)
        z = np.nan_to_num(np.clip((age - 33.0) / 12.0, -2, 2))
        leaning = np.array([AGE_LEANING.get(f, 0.0) for f in FACETS] + [0.0])
        tilt += config.age_tilt * z[:, None] * leaning[None, :]
    if "occupation" in users:
        rng = _rng(config, 4)
        names = sorted(users["occupation"].dropna().astype(str).unique())
        offsets = {name: rng.normal(0.0, config.occupation_tilt, len(FACETS)) for name in names}
        for row, name in enumerate(users["occupation"]):
            if isinstance(name, str) and name in offsets:
                tilt[row, : len(FACETS)] += offsets[name]
    return tilt


def choice_probabilities(catalog: Catalog, examples: pd.DataFrame, config: SimulatorConfig):
    """Each example's choice probabilities over its title's artworks, in option order.

    Returns ``(indptr, codes, probs)``: example ``e``'s options are ``codes[indptr[e]:indptr[e+1]]``
    (artwork codes) with probabilities ``probs[...]``. Reads the catalog's ``artworks`` and
    ``artwork_truth`` tables, so it reproduces what :func:`simulate` drew from.
    """
    artworks, truth = catalog.tables["artworks"], catalog.tables["artwork_truth"]
    facets = item_facets(catalog.items, config)
    title_start = np.searchsorted(artworks["item"].to_numpy(), np.arange(catalog.n_items), side="left")
    n_options = np.bincount(artworks["item"].to_numpy(), minlength=catalog.n_items)
    items = examples["item"].to_numpy()
    lengths = n_options[items]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    row = np.repeat(np.arange(len(examples)), lengths)
    codes = np.repeat(title_start[items], lengths) + (np.arange(indptr[-1]) - indptr[row])
    primary = truth["facet"].map(FACET_INDEX).to_numpy()
    secondary = truth["secondary_facet"].map(FACET_INDEX).fillna(len(FACETS)).to_numpy(np.int64)
    aff = affinities(catalog, facets, examples, config)
    tilt = user_tilts(catalog.users, config)[examples["user"].to_numpy()]
    utility = (aff[row, primary[codes]] + SECONDARY_WEIGHT * aff[row, secondary[codes]] + tilt[row, primary[codes]]
               + truth["appeal"].to_numpy()[codes])
    scaled = utility / config.temperature
    scaled -= np.repeat(np.maximum.reduceat(scaled, indptr[:-1]), lengths)
    weights = np.exp(scaled)
    probs = weights / np.repeat(np.add.reduceat(weights, indptr[:-1]), lengths)
    return indptr, codes.astype(np.int64), probs


def simulate(base: Catalog, config: SimulatorConfig, name: str) -> Catalog:
    """``base`` plus the tables ``artworks``, ``artwork_truth`` and ``artwork_log`` (see the module doc)."""
    if not base.interactions["rating"].notna().any():
        raise ConfigError(f"artwork simulator: dataset {base.name!r} has no ratings; liked items need them.")
    unknown = sorted({g for gs in base.items["genres"].fillna("") for g in str(gs).split("|") if g} - set(GENRE_FACETS))
    if unknown:
        raise ConfigError(f"artwork simulator: dataset {base.name!r} has genres {unknown} the simulator has no facets for.")
    artworks, truth = make_artworks(base, item_facets(base.items, config), config)
    staged = dataclasses.replace(base, tables={"artworks": artworks, "artwork_truth": truth})
    examples = eligible_examples(base, config)
    indptr, codes, probs = choice_probabilities(staged, examples, config)
    # inverse-CDF draw per example; the clip guards the last option against rounding
    cdf = np.cumsum(probs)
    before = cdf[indptr[:-1]] - probs[indptr[:-1]]
    draw = np.searchsorted(cdf, before + _rng(config, 5).random(len(examples)), side="right")
    pick = np.clip(draw, indptr[:-1], indptr[1:] - 1)
    log = examples.assign(
        chosen=codes[pick].astype(np.int64),
        propensity=1.0 / np.diff(indptr),
        p_best=np.maximum.reduceat(probs, indptr[:-1]),
        p_chosen=probs[pick],
    )
    source = {
        "kind": "artwork-simulator", "simulator": f"recbench.data.artwork_sim v{SIM_VERSION}", "base": base.name,
        "base_content_hash": base.content_hash(), "config": dataclasses.asdict(config),
    }  # fmt: skip
    provenance = {**base.provenance, "source": source}
    return dataclasses.replace(base, name=name, provenance=provenance,
                               tables={"artworks": artworks, "artwork_truth": truth, "artwork_log": log})
