"""``production``: a learned non-LLM choice model, standing in for the artwork paper's production network.

It scores a (user, artwork) pair as ``p(user)ᵀ W c(artwork) + b(artwork)``:

- ``c``: the caption's text embedding, TF-IDF of caption words, reduced by
  truncated SVD and L2-normalized;
- ``p``: the user's history and demographics: the genre shares of the liked history titles minus
  the catalog's, the mean caption embedding of the liked titles' artworks (what those titles look
  like) minus its average, age (z-scored), gender and occupation one-hots, and a constant (so
  ``W`` also learns which captions appeal to everyone);
- ``b``: a per-artwork bias, how often that artwork wins beyond its caption.

``W`` and ``b`` are fitted as a conditional logit (a softmax over each training example's options)
by L-BFGS with an L2 penalty; the penalty is chosen on validation IPS, computed with the uniform
propensity ``1/m`` because a method does not see logged propensities. The model uses only what
every method gets: histories, the catalog's item and user tables, and the artworks' captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.config import option
from recbench.contracts import CANDIDATES
from recbench.errors import UnsupportedTaskError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.method import ScoringMethod
from recbench.metrics import score_ranking

DEMOGRAPHIC_CATEGORIES = ("gender", "occupation")


@dataclass(frozen=True)
class ProductionConfig:
    caption_dim: int = option(64, "dimensions of the caption embedding (truncated SVD of caption TF-IDF)")
    l2_grid: tuple[float, ...] = option((1.0, 10.0, 100.0), "L2 penalties tried, strongest first; the best validation IPS wins")
    like_threshold: float = option(4.0, "history ratings at or above this count as liked (missing ratings count as liked)")
    max_iter: int = option(300, "L-BFGS iterations per penalty")


@dataclass(frozen=True)
class _Choices:
    """Training examples grouped by their option list (a title's artworks): group ``g`` is rows
    ``[starts[g], stops[g])`` of ``profiles``, choosing among ``options[g]`` (artwork codes)."""

    profiles: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    options: list[np.ndarray]
    chosen: np.ndarray  # column of each example's engaged artwork in its group's options


class Production(ScoringMethod):
    name = "production"
    description = "Conditional-logit choice model over user-history x caption-text features (non-LLM)"
    Config = ProductionConfig
    contracts = frozenset({CANDIDATES})
    candidate_tables = frozenset({"artworks"})

    def fit(self, data: FitData) -> None:
        import sklearn.decomposition  # noqa: F401  loads scipy's BLAS now: a limit only reaches loaded libraries
        from threadpoolctl import threadpool_limits

        # thousands of small per-title products: BLAS threads only add spin-waiting (3x slower on 2 busy cores)
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(data)

    def _fit(self, data: FitData) -> None:
        super().fit(data)
        if data.train_examples is None or data.train_targets is None or "artworks" not in data.catalog.tables:
            raise UnsupportedTaskError(
                f"method {self.name!r} learns from labelled choices among a side table of artworks; the task gave "
                "no train_examples or no 'artworks' table. Run it on the artwork task."
            )
        self._captions = self._embed_captions(data.catalog.tables["artworks"])
        self._title_vectors = self._mean_by_title(data.catalog.tables["artworks"])
        self._genres = _genre_matrix(data.catalog.items)
        self._genre_base = self._genres.mean(axis=0)
        self._title_base = self._title_vectors.mean(axis=0)
        self._demographics = _demographics(data.catalog.users)
        train = self._choices(data.train_examples, data.train_targets)
        n_params = train.profiles.shape[1] * self._captions.shape[1] + len(self._captions)
        theta = np.zeros(n_params)
        self._valid_ips: dict[str, float] = {}
        best = (-np.inf, theta, None)
        for l2 in sorted(self.config.l2_grid, reverse=True):  # strongest first: each warm-starts the next
            theta = self._optimize(train, l2, theta)
            self._theta = theta
            ips = _uniform_ips(self._ranked_top(data.valid), data.valid, data.valid_targets)
            self._valid_ips[str(l2)] = round(ips, 4)
            if ips > best[0]:
                best = (ips, theta.copy(), l2)
        self._theta, self._l2 = best[1], best[2]

    # --- features ------------------------------------------------------------------------

    def _embed_captions(self, artworks: pd.DataFrame) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(min_df=2, sublinear_tf=True, stop_words="english")
        matrix = tfidf.fit_transform(artworks["caption"].fillna("").astype(str))
        dim = max(1, min(2 * self.config.caption_dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        dense = TruncatedSVD(dim, n_iter=3, random_state=self.seed).fit_transform(matrix)
        # what all artworks of a title share (layout, palette, lettering) cannot tell them apart:
        # keep the directions that vary within titles
        items = artworks["item"].to_numpy()
        means = np.zeros((items.max(initial=0) + 1, dim))
        np.add.at(means, items, dense)
        within = dense - (means / np.maximum(np.bincount(items), 1)[:, None])[items]
        _, _, axes = np.linalg.svd(within, full_matrices=False)
        dense = dense @ axes[: self.config.caption_dim].T
        return dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-9)

    def _mean_by_title(self, artworks: pd.DataFrame) -> np.ndarray:
        items = artworks["item"].to_numpy()
        sums = np.zeros((self.catalog.n_items, self._captions.shape[1]))
        np.add.at(sums, items, self._captions)
        return sums / np.maximum(np.bincount(items, minlength=self.catalog.n_items), 1)[:, None]

    def _profiles(self, examples: ExampleSet) -> np.ndarray:
        from scipy import sparse

        hist = examples.histories
        liked = np.where(np.isnan(hist.ratings), 1.0, hist.ratings >= self.config.like_threshold)
        matrix = sparse.csr_matrix((liked, hist.items, hist.indptr), shape=(len(examples), self.catalog.n_items))
        n_liked = np.asarray(matrix.sum(axis=1))  # (n, 1)
        count, has_liked = np.maximum(n_liked, 1.0), n_liked > 0
        genres = np.where(has_liked, matrix @ self._genres / count - self._genre_base, 0.0)
        looks = np.where(has_liked, matrix @ self._title_vectors / count - self._title_base, 0.0)
        return np.hstack([genres, looks, self._demographics[examples.users], np.ones((len(examples), 1))])

    def _choices(self, examples: ExampleSet, targets: Targets) -> _Choices:
        # examples sharing an option list become one dense block: scores are then small matrix products
        _, group = np.unique(examples.candidates, axis=0, return_inverse=True)
        order = np.argsort(group.ravel(), kind="stable")
        candidates = examples.candidates[order]
        cuts = np.flatnonzero(np.diff(group.ravel()[order])) + 1
        starts, stops = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(order)]])
        options = [candidates[start][candidates[start] >= 0] for start in starts]
        # padding comes last, so a target's slot in its row is also its column among the options
        chosen = np.argmax(candidates == targets.items[order][:, None], axis=1)
        return _Choices(self._profiles(examples)[order], starts, stops, options, chosen)

    # --- the conditional logit -----------------------------------------------------------

    def _unpack(self, theta: np.ndarray, n_profile: int) -> tuple[np.ndarray, np.ndarray]:
        dim = self._captions.shape[1]
        return theta[: n_profile * dim].reshape(n_profile, dim), theta[n_profile * dim :]

    def _optimize(self, train: _Choices, l2: float, start: np.ndarray) -> np.ndarray:
        from scipy import optimize

        n, n_profile = train.profiles.shape
        blocks = [self._captions[codes] for codes in train.options]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            weights, bias = self._unpack(theta, n_profile)
            user = train.profiles @ weights
            grad_user = np.empty_like(user)
            grad_b = np.zeros_like(bias)
            total = 0.5 * l2 * float(theta @ theta)
            for start, stop, codes, block in zip(train.starts, train.stops, train.options, blocks):
                rows = np.arange(stop - start)
                scores = user[start:stop] @ block.T + bias[codes]
                scores -= scores.max(axis=1, keepdims=True)
                probs = np.exp(scores)
                norm = probs.sum(axis=1, keepdims=True)
                total += float(np.log(norm).sum() - scores[rows, train.chosen[start:stop]].sum())
                probs /= norm
                probs[rows, train.chosen[start:stop]] -= 1.0
                grad_user[start:stop] = probs @ block
                grad_b[codes] += probs.sum(axis=0)
            grad = np.concatenate([(train.profiles.T @ grad_user).ravel(), grad_b]) + l2 * theta
            return total / n, grad / n

        result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": self.config.max_iter})
        return result.x

    # --- prediction ----------------------------------------------------------------------

    def score_candidates(self, examples: ExampleSet) -> np.ndarray:
        profiles = self._profiles(examples)
        weights, bias = self._unpack(self._theta, profiles.shape[1])
        codes = np.maximum(examples.candidates, 0)
        scores = np.einsum("nd,ncd->nc", profiles @ weights, self._captions[codes]) + bias[codes]
        return np.where(examples.candidates >= 0, scores, -np.inf)

    def score(self, examples: ExampleSet) -> np.ndarray:
        raise NotImplementedError(f"{self.name} scores artworks among a title's options only (score_candidates).")

    def _ranked_top(self, examples: ExampleSet) -> np.ndarray:
        scores = self.score_candidates(examples)
        return examples.candidates[np.arange(len(examples)), np.argmax(scores, axis=1)]

    def describe(self) -> dict[str, Any]:
        return {"l2": self._l2, "valid_ips_by_l2": self._valid_ips, "caption_dim": int(self._captions.shape[1])}


def _uniform_ips(top: np.ndarray, examples: ExampleSet, targets: Targets) -> float:
    """IPS (recbench.metrics) of the top choices with the uniform propensity ``1/m`` over each example's options."""
    m = (examples.candidates >= 0).sum(axis=1)
    return score_ranking("ips", np.asarray(top).reshape(-1, 1), targets, {"propensity": 1.0 / m})


def _genre_matrix(items: pd.DataFrame) -> np.ndarray:
    lists = [[g for g in str(gs).split("|") if g] for gs in items["genres"].fillna("")]
    names = sorted({g for genres in lists for g in genres})
    index = {g: i for i, g in enumerate(names)}
    matrix = np.zeros((len(items), len(names)))
    for row, genres in enumerate(lists):
        matrix[row, [index[g] for g in genres]] = 1.0
    return matrix


def _demographics(users: pd.DataFrame) -> np.ndarray:
    """Age (z-scored, 0 if unknown) and one-hots of gender and occupation, where the users table has them."""
    parts = []
    if "age" in users:
        age = pd.to_numeric(users["age"], errors="coerce").to_numpy(dtype=float)
        parts.append(np.nan_to_num((age - np.nanmean(age)) / max(np.nanstd(age), 1e-9))[:, None] if np.isfinite(age).any()
                     else np.zeros((len(users), 1)))
    for column in DEMOGRAPHIC_CATEGORIES:
        if column in users:
            parts.append(pd.get_dummies(users[column].astype("string").fillna("?")).to_numpy(dtype=float))
    return np.hstack(parts) if parts else np.zeros((len(users), 0))


@hookimpl
def recbench_register_methods(register):
    register(Production)
