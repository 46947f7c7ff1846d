"""Ranking and off-policy metrics, each defined once, vectorized, with bootstrap confidence intervals.

A metric sees an :class:`Outcome`: for each of n examples, which of the method's top K positions
hold a target item, how many targets there are, and optional per-example arrays (``propensity``,
``reward``). Task specs name metrics ``family``, ``family@k``, ``family[subset]`` or
``family@k[subset]``; :func:`evaluate` scores a list of such names and bootstraps each one.

This module is a built-in plugin: :func:`recbench_register_metrics` registers every family below
through the same hook a third-party metric plugin implements.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.errors import UnknownNameError
from recbench.examples import Targets

# Bootstrap resamples are drawn this many examples x resamples at a time (about 32 MB of indices).
_CHUNK_ELEMENTS = 1 << 22
_MAX_CHUNK_RESAMPLES = 200


@dataclass(frozen=True)
class Outcome:
    """What metrics see for n evaluated examples.

    ``hits[i, j]``: ranked position j (0-based, best first) of example i holds one of its targets.
    ``n_targets[i]``: number of distinct target items of example i (at least 1).
    ``extras``: optional per-example arrays: ``propensity`` (logging propensity of the logged
    action, in (0, 1]) and ``reward`` (defaults to 1) for the off-policy metrics.
    """

    hits: np.ndarray
    n_targets: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hits.ndim != 2 or self.hits.dtype != np.bool_:
            raise ValueError(f"Outcome.hits must be a 2-D bool array (n, K); got {self.hits.dtype} {self.hits.shape}.")
        n = len(self.hits)
        if self.n_targets.shape != (n,):
            raise ValueError(f"Outcome.n_targets has shape {self.n_targets.shape}; expected ({n},), one per example.")
        if n and self.n_targets.min() < 1:
            raise ValueError(f"Outcome.n_targets: example {int(np.argmin(self.n_targets))} has no target item.")
        for name, values in self.extras.items():
            if np.shape(values) != (n,):
                raise ValueError(f"Outcome.extras[{name!r}] has shape {np.shape(values)}; expected ({n},).")

    def __len__(self) -> int:
        return len(self.hits)

    @classmethod
    def from_ranking(
        cls, ranked_items: np.ndarray, targets: Targets, extras: Mapping[str, np.ndarray] | None = None
    ) -> Outcome:
        """Hits of ranked lists ``(n, K)`` (``-1`` = empty slot) against ``targets``.

        An item repeated in a ranked list counts once, at its first position.
        """
        ranked = np.asarray(ranked_items)
        if not np.issubdtype(ranked.dtype, np.integer):
            raise ValueError(f"ranked_items must hold integer item codes (-1 for an empty slot); got {ranked.dtype}.")
        if ranked.ndim != 2 or len(ranked) != len(targets):
            raise ValueError(
                f"ranked_items must be (n, K) with n = {len(targets)} examples (one row per target row); "
                f"got shape {ranked.shape}."
            )
        n, width = ranked.shape
        counts = targets.counts
        if n and counts.min() < 1:
            raise ValueError(f"targets: example {int(np.argmin(counts))} has no target item.")
        if np.all(counts == 1):  # one target per example: a broadcast comparison
            hits = (ranked == targets.items[:, None]) & (ranked >= 0)
            n_targets = np.ones(n, dtype=np.int64)
            if (hits.sum(axis=1) > 1).any():  # the target repeated in one list: keep its first position
                hits &= np.cumsum(hits, axis=1) == 1
        else:  # several targets: (row, item) pairs as int64 keys, membership by binary search
            base = int(max(ranked.max(initial=0), targets.items.max(initial=0))) + 1
            target_keys = np.sort(np.repeat(np.arange(n, dtype=np.int64), counts) * base + targets.items)
            target_keys = target_keys[_first_of_runs(target_keys)]  # a target listed twice counts once
            n_targets = np.bincount(target_keys // base, minlength=n)
            ranked_keys = (np.arange(n, dtype=np.int64)[:, None] * base + ranked).ravel()
            found = np.minimum(np.searchsorted(target_keys, ranked_keys), len(target_keys) - 1)
            flat_hits = (target_keys[found] == ranked_keys) & (ranked.ravel() >= 0)
            positions = np.flatnonzero(flat_hits)
            order = np.argsort(ranked_keys[positions], kind="stable")  # stable: earliest position first
            flat_hits[positions[order[~_first_of_runs(ranked_keys[positions][order])]]] = False
            hits = flat_hits.reshape(n, width)
        return cls(hits, n_targets, {k: np.asarray(v) for k, v in (extras or {}).items()})


def _first_of_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values in a sorted array."""
    first = np.ones(len(sorted_keys), dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    return first


@dataclass(frozen=True)
class Metric:
    """A metric family. ``per_example(outcome, k)`` gives one float per example; the aggregate is
    their mean, or ``sum(values) / sum(denominator(outcome, k))`` for self-normalized estimators.

    ``needs_k``: the name must carry a cutoff (``ndcg@10``). ``accepts_k``: a cutoff is allowed at
    all (``accuracy@5`` is an error).
    """

    name: str
    description: str
    needs_k: bool
    per_example: Callable[[Outcome, int | None], np.ndarray]
    denominator: Callable[[Outcome, int | None], np.ndarray] | None = None
    higher_is_better: bool = True
    accepts_k: bool = True


def _top(outcome: Outcome, k: int | None) -> np.ndarray:
    return outcome.hits if k is None else outcome.hits[:, :k]


def _hit_rate(o: Outcome, k: int | None) -> np.ndarray:
    return _top(o, k).any(axis=1).astype(np.float64)


def _recall(o: Outcome, k: int | None) -> np.ndarray:
    return _top(o, k).sum(axis=1) / o.n_targets


def _precision(o: Outcome, k: int | None) -> np.ndarray:
    top = _top(o, k)
    return top.sum(axis=1) / top.shape[1]


def _ndcg(o: Outcome, k: int | None) -> np.ndarray:
    top = _top(o, k)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    ideal = np.cumsum(discounts)[np.minimum(o.n_targets, top.shape[1]) - 1]
    return (top @ discounts) / ideal


def _mrr(o: Outcome, k: int | None) -> np.ndarray:
    top = _top(o, k)
    first = np.argmax(top, axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def _accuracy(o: Outcome, k: int | None) -> np.ndarray:
    return o.hits[:, 0].astype(np.float64)


def _propensity_weighted_hit(o: Outcome, metric: str) -> np.ndarray:
    """hit@1 / propensity: the importance weight of a deterministic policy on one logged action."""
    if "propensity" not in o.extras:
        raise ValueError(
            f"metric {metric!r} needs the per-example array 'propensity' in Outcome.extras (the logging "
            f"propensity of each logged action); the task provides only {sorted(o.extras) or 'none'}."
        )
    propensity = np.asarray(o.extras["propensity"], dtype=np.float64)
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise ValueError(f"metric {metric!r}: every propensity must lie in (0, 1]; got min {propensity.min()}.")
    return o.hits[:, 0] / propensity


def _reward(o: Outcome) -> np.ndarray:
    return np.asarray(o.extras.get("reward", 1.0), dtype=np.float64)


def _ips(o: Outcome, k: int | None) -> np.ndarray:
    return _reward(o) * _propensity_weighted_hit(o, "ips")


def _snips_weight(o: Outcome, k: int | None) -> np.ndarray:
    return _propensity_weighted_hit(o, "snips")


def _snips(o: Outcome, k: int | None) -> np.ndarray:
    return _reward(o) * _snips_weight(o, k)


BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric("hr", "Hit rate@k: 1 if any target is in the top k, else 0; mean over examples.", True, _hit_rate),
    Metric("recall", "Recall@k: (number of targets in the top k) / (number of targets).", True, _recall),
    Metric("precision", "Precision@k: (number of targets in the top k) / k; empty slots count as misses.", True,
           _precision),
    Metric("ndcg", "NDCG@k: DCG with binary gains, sum of 1/log2(rank + 1) over targets in the top k (rank "
           "1-based), divided by the ideal DCG over min(number of targets, k) positions.", True, _ndcg),
    Metric("mrr", "MRR@k: 1/rank of the first target within the top k, else 0. Without k: over the whole "
           "ranked list returned.", False, _mrr),
    Metric("accuracy", "Accuracy: 1 if the top-1 item is a target, else 0.", False, _accuracy, accepts_k=False),
    Metric("ips", "IPS: inverse propensity scoring of the method as a deterministic policy on logged data; "
           "per example reward * [top-1 == logged action] / propensity, mean over examples. With uniform "
           "logging over m options the propensity is 1/m, so a correct pick among 40 options weighs 20 times "
           "one among 2. Needs extras 'propensity'; 'reward' defaults to 1.", False, _ips, accepts_k=False),
    Metric("snips", "SNIPS: self-normalized IPS, sum(reward * hit@1 / propensity) / sum(hit@1 / propensity); "
           "0.0 when no top-1 pick matches a logged action. When every logged example is an engagement "
           "(all rewards 1) it is 1 whenever any pick matches, so it is informative only with rewards in "
           "{0, 1}, from logs that include non-engaged impressions.", False, _snips, _snips_weight,
           accepts_k=False),
)


@hookimpl
def recbench_register_metrics(register: Callable[..., None]) -> None:
    """Register recbench's built-in metric families."""
    for metric in BUILTIN_METRICS:
        register(metric)


_NAME = re.compile(r"^(?P<family>[a-z0-9][a-z0-9_.\-]*)(?:@(?P<k>[^\[\]]*))?(?:\[(?P<subset>[^\[\]]*)\])?$")
_SUBSET = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def parse_metric_name(name: str, metrics: Mapping[str, Metric] | None = None) -> tuple[str, int | None, str | None]:
    """Split ``family@k[subset]`` into ``(family, k or None, subset or None)``.

    The cutoff is checked against ``metrics[family]`` (default: the built-in families) when the
    family is known there; an unknown family is left for the caller to report.
    """
    match = _NAME.match(name)
    if match is None:
        raise ValueError(
            f"bad metric name {name!r}: write 'family', 'family@k', 'family[subset]' or 'family@k[subset]' "
            "with a lower-case family (e.g. 'ndcg@10', 'recall@1[discovery]')."
        )
    family, k_text, subset = match["family"], match["k"], match["subset"]
    k = None
    if k_text is not None:
        if not k_text.isdigit() or int(k_text) < 1:
            raise ValueError(f"bad metric name {name!r}: the cutoff after '@' must be a positive integer, got {k_text!r}.")
        k = int(k_text)
    if subset is not None and not _SUBSET.match(subset):
        raise ValueError(f"bad metric name {name!r}: subset {subset!r} must be a lower-case name like 'discovery'.")
    known = {m.name: m for m in BUILTIN_METRICS} if metrics is None else metrics
    if family in known:
        _check_cutoff(name, known[family], k)
    return family, k, subset


def _check_cutoff(name: str, metric: Metric, k: int | None) -> None:
    if metric.needs_k and k is None:
        raise ValueError(f"metric {name!r}: {metric.name!r} needs a cutoff, e.g. '{metric.name}@10'.")
    if not metric.accepts_k and k is not None:
        raise ValueError(f"metric {name!r}: {metric.name!r} takes no cutoff; write {metric.name!r}.")


@dataclass(frozen=True)
class EvaluationResult:
    """``summary[name]``: value, percentile-bootstrap CI, example count and direction.
    ``per_example[name]``: per-example values, NaN outside the metric's subset."""

    summary: dict[str, dict[str, float | int | bool]]
    per_example: dict[str, np.ndarray]


def evaluate(
    outcome: Outcome,
    names: Sequence[str],
    metrics: Mapping[str, Metric],
    *,
    subsets: Mapping[str, np.ndarray] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvaluationResult:
    """Score ``outcome`` on each metric name, with a percentile bootstrap over examples.

    Each metric is bootstrapped with its own generator seeded by ``(seed, name)``, so its interval
    does not depend on which other metrics were asked for. ``n_bootstrap=0`` gives NaN intervals.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    subsets = subsets or {}
    n, width = outcome.hits.shape
    summary: dict[str, dict[str, float | int | bool]] = {}
    per_example: dict[str, np.ndarray] = {}
    for name in names:
        family, k, subset = parse_metric_name(name, metrics={})
        if family not in metrics:
            raise UnknownNameError(_unknown_metric_message(family, metrics))
        metric = metrics[family]
        _check_cutoff(name, metric, k)
        if k is not None and k > width:
            raise ValueError(
                f"metric {name!r} scores the top {k} items, but the method returned only {width} per example; "
                f"ask the method for at least {k} items or lower the cutoff."
            )
        values = np.asarray(metric.per_example(outcome, k), dtype=np.float64)
        denominator = None if metric.denominator is None else np.asarray(metric.denominator(outcome, k), np.float64)
        mask = _subset_mask(name, subset, subsets, n)
        if mask is not None:
            values = np.where(mask, values, np.nan)
            inside_values, inside_den = values[mask], None if denominator is None else denominator[mask]
        else:
            inside_values, inside_den = values, denominator
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        low, high = _bootstrap_ci(inside_values, inside_den, n_bootstrap, confidence, rng)
        summary[name] = {
            "value": _aggregate(inside_values, inside_den),
            "ci_low": low,
            "ci_high": high,
            "n": len(inside_values),
            "higher_is_better": metric.higher_is_better,
        }
        per_example[name] = values
    return EvaluationResult(summary, per_example)


def score_ranking(name: str, ranked: np.ndarray, targets: Targets, extras: Mapping[str, np.ndarray] | None = None) -> float:
    """One built-in metric of ranked lists ``(n, K)`` against ``targets``, without intervals: for
    choosing settings on validation (the same definition the runner scores the test with)."""
    outcome = Outcome.from_ranking(np.asarray(ranked), targets, extras)
    result = evaluate(outcome, [name], {m.name: m for m in BUILTIN_METRICS}, n_bootstrap=0)
    return float(result.summary[name]["value"])


def _unknown_metric_message(family: str, metrics: Mapping[str, Metric]) -> str:
    from recbench.registry import unknown_name_message  # the registry imports this module's Metric lazily

    return unknown_name_message("metric", family, metrics)


def _subset_mask(name: str, subset: str | None, subsets: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    if subset is None:
        return None
    if subset not in subsets:
        raise ValueError(
            f"metric {name!r} names subset {subset!r}, which this task does not define. "
            f"Available subsets: {', '.join(sorted(subsets)) or '(none)'}."
        )
    mask = np.asarray(subsets[subset])
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ValueError(f"subset {subset!r} must be a bool mask of shape ({n},); got {mask.dtype} {mask.shape}.")
    return mask


def _aggregate(values: np.ndarray, denominator: np.ndarray | None) -> float:
    if len(values) == 0:
        return float("nan")
    if denominator is None:
        return float(values.mean())
    total = denominator.sum()
    return float(values.sum() / total) if total != 0 else 0.0


def _bootstrap_ci(
    values: np.ndarray,
    denominator: np.ndarray | None,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    *,
    chunk_elements: int = _CHUNK_ELEMENTS,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (or of sum(values) / sum(denominator)).

    Exact resampling of n examples with replacement, drawn in one of two equivalent ways: when
    the examples take few distinct (value, denominator) pairs, as multinomial counts over those
    pairs (a resample's sum only depends on how often each pair is drawn; costs O(distinct) per
    resample, so 1e6 hit/miss examples x 1000 resamples takes milliseconds); otherwise as index
    draws in chunks of at most ``chunk_elements`` so memory stays bounded for any n.
    """
    n = len(values)
    if n == 0 or n_resamples == 0:
        return float("nan"), float("nan")
    if denominator is None:
        den = np.ones(n)
        _, pair_first, pair_counts = np.unique(values, return_index=True, return_counts=True)
    else:
        den = denominator
        value_codes = np.unique(values, return_inverse=True)[1].ravel()
        den_codes = np.unique(den, return_inverse=True)[1].ravel()
        pair_codes = value_codes * (int(den_codes.max()) + 1) + den_codes
        _, pair_first, pair_counts = np.unique(pair_codes, return_index=True, return_counts=True)
    if 4 * len(pair_counts) <= n:  # a binomial draw per pair costs about four index draws
        counts = rng.multinomial(n, pair_counts / n, size=n_resamples)
        numerators, denominators = counts @ values[pair_first], counts @ den[pair_first]
    else:
        numerators, denominators = np.empty(n_resamples), np.empty(n_resamples)
        step = max(1, min(_MAX_CHUNK_RESAMPLES, chunk_elements // n))
        for start in range(0, n_resamples, step):
            stop = min(start + step, n_resamples)
            index = rng.integers(0, n, size=(stop - start, n))
            numerators[start:stop] = values[index].sum(axis=1)
            denominators[start:stop] = den[index].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = np.where(denominators != 0, numerators / denominators, 0.0)
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarize_values(
    values: np.ndarray, *, seed: int = 0, n_bootstrap: int = 1000, confidence: float = 0.95, higher_is_better: bool = True
) -> dict[str, Any]:
    """Mean and percentile-bootstrap interval of per-example values (e.g. expected values of a ceiling)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = _bootstrap_ci(values, None, n_bootstrap, confidence, np.random.default_rng(seed))
    return {"value": _aggregate(values, None), "ci_low": low, "ci_high": high, "n": int(len(values)),
            "higher_is_better": higher_is_better}


def ratio_interval(
    numerators: np.ndarray, denominators: np.ndarray, *, seed: int = 0, n_bootstrap: int = 2000, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``sum(numerators) / sum(denominators)``, resampling the units they count
    (e.g. the right pairs and all pairs of each prompt: a cluster bootstrap)."""
    rng = np.random.default_rng(seed)
    return _bootstrap_ci(np.asarray(numerators, np.float64), np.asarray(denominators, np.float64), n_bootstrap, confidence, rng)


def accuracy_by_label(hits_at_1: np.ndarray, label_index: np.ndarray) -> pd.DataFrame:
    """Top-1 accuracy per ground-truth option index (e.g. "the answer was option 3 of 4").

    Returns one row per label index that occurs, sorted: ``label_index``, ``count``, ``accuracy``.
    Useful to spot position bias in multiple-choice tasks.
    """
    hits = np.asarray(hits_at_1, dtype=np.float64)
    labels = np.asarray(label_index, dtype=np.int64)
    if hits.shape != labels.shape or hits.ndim != 1:
        raise ValueError(f"hits_at_1 {hits.shape} and label_index {labels.shape} must be 1-D of the same length.")
    if len(labels) and labels.min() < 0:
        raise ValueError("label_index must be non-negative option indices.")
    counts = np.bincount(labels)
    correct = np.bincount(labels, weights=hits, minlength=len(counts))
    present = np.flatnonzero(counts)
    return pd.DataFrame(
        {"label_index": present, "count": counts[present], "accuracy": correct[present] / counts[present]}
    )
