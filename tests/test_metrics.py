"""Metrics against hand-computed answers, name parsing, subsets, bootstrap and registration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbench.errors import UnknownNameError
from recbench.examples import Targets
from recbench.metrics import (
    BUILTIN_METRICS,
    Metric,
    Outcome,
    _bootstrap_ci,
    accuracy_by_label,
    evaluate,
    parse_metric_name,
    recbench_register_metrics,
)

METRICS = {m.name: m for m in BUILTIN_METRICS}


def scores(outcome: Outcome, *names: str, **kwargs) -> dict[str, float]:
    result = evaluate(outcome, names, METRICS, n_bootstrap=0, **kwargs)
    return {name: result.summary[name]["value"] for name in names}


def per_example(outcome: Outcome, name: str, **kwargs) -> np.ndarray:
    return evaluate(outcome, [name], METRICS, n_bootstrap=0, **kwargs).per_example[name]


def top1_outcome(hit_at_1: list[bool], **extras: list[float]) -> Outcome:
    """Outcomes of one-slot rankings: whether each example's top pick is the logged action."""
    hits = np.array(hit_at_1, dtype=bool)[:, None]
    return Outcome(hits, np.ones(len(hit_at_1), np.int64), {k: np.array(v) for k, v in extras.items()})


# --- building outcomes --------------------------------------------------------------------------


def test_from_ranking_single_target():
    ranked = np.array([[7, 3, 5], [2, 9, 4], [-1, 1, 6]])
    outcome = Outcome.from_ranking(ranked, Targets.single(np.array([3, 8, 6])))
    assert outcome.hits.tolist() == [[False, True, False], [False, False, False], [False, False, True]]
    assert outcome.n_targets.tolist() == [1, 1, 1]


def test_from_ranking_multi_target_and_empty_slots_never_hit():
    # Keys are row * 5 + item (largest item is 4, a target of row 0 that row 0 does not rank). Row 1's empty slot would be 1 * 5 - 1 = 4, the
    # key of (row 0, item 4): a -1 must still not count as a hit.
    ranked = np.array([[1, 2, 3], [-1, 0, 3]])
    targets = Targets.from_lists([[4, 2], [0, 1]])
    outcome = Outcome.from_ranking(ranked, targets)
    assert outcome.hits.tolist() == [[False, True, False], [False, True, False]]
    assert outcome.n_targets.tolist() == [2, 2]


def test_from_ranking_counts_a_repeated_item_once():
    single = Outcome.from_ranking(np.array([[5, 5, 6]]), Targets.single(np.array([5])))
    assert single.hits.tolist() == [[True, False, False]]
    multi = Outcome.from_ranking(np.array([[5, 5, 6]]), Targets.from_lists([[5, 6, 6]]))
    assert multi.hits.tolist() == [[True, False, True]]
    assert multi.n_targets.tolist() == [2]  # the duplicated target 6 counts once


def test_from_ranking_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="n = 2 examples"):
        Outcome.from_ranking(np.array([[1, 2]]), Targets.single(np.array([1, 2])))
    with pytest.raises(ValueError, match="integer item codes"):
        Outcome.from_ranking(np.array([[1.0, 2.0]]), Targets.single(np.array([1])))


# --- ranking metrics -----------------------------------------------------------------------------

# Row 0: targets {1, 4, 6}; hits at ranks 2 and 3.  Row 1: target {5}; no hit.
MULTI = Outcome.from_ranking(np.array([[3, 1, 4, -1], [2, 7, 8, 9]]), Targets.from_lists([[1, 4, 6], [5]]))


def test_hit_rate():
    # hr@1: no top-1 hit -> [0, 0]; hr@2: row 0 hits at rank 2 -> [1, 0], mean 0.5
    assert scores(MULTI, "hr@1", "hr@2") == {"hr@1": 0.0, "hr@2": pytest.approx(0.5)}


def test_recall_multi_target():
    # recall@2: row 0 has 1 of 3 targets -> 1/3, row 1 -> 0; mean 1/6. recall@4: row 0 2/3; mean 1/3.
    assert per_example(MULTI, "recall@2").tolist() == pytest.approx([1 / 3, 0.0])
    assert scores(MULTI, "recall@2", "recall@4") == pytest.approx({"recall@2": 1 / 6, "recall@4": 1 / 3})


def test_precision_multi_target():
    # precision@2: row 0 1/2, row 1 0 -> mean 1/4. precision@4: row 0 2/4 (the -1 slot is a miss) -> mean 1/4.
    # precision@3: row 0 2/3 -> mean 1/3.
    assert scores(MULTI, "precision@2", "precision@3", "precision@4") == pytest.approx(
        {"precision@2": 0.25, "precision@3": 1 / 3, "precision@4": 0.25}
    )


def test_ndcg_hand_values():
    outcome = Outcome.from_ranking(
        np.array([[9, 5, 7], [1, 2, 3], [4, 5, 6], [1, 2, 3]]),
        Targets.from_lists([[5, 7], [1], [8], [2, 3, 10, 11]]),
    )
    # Row 0: targets at ranks 2 and 3 of 2 targets: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3)) = 0.693426
    row0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    # Row 1: the only target at rank 1 -> 1. Row 2: no hit -> 0.
    # Row 3: 4 targets, hits at ranks 2, 3; ideal DCG over min(4, 3) = 3 positions:
    #   (1/log2(3) + 1/2) / (1 + 1/log2(3) + 1/2) = 1.130930 / 2.130930 = 0.530721
    row3 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3) + 0.5)
    assert row0 == pytest.approx(0.693426, abs=1e-6) and row3 == pytest.approx(0.530721, abs=1e-6)
    assert per_example(outcome, "ndcg@3").tolist() == pytest.approx([row0, 1.0, 0.0, row3])
    # ndcg@2: row 0 = (1/log2 3) / (1 + 1/log2 3) = 0.386853; row 3 = same hit at rank 2, ideal over 2 positions.
    assert per_example(outcome, "ndcg@2").tolist() == pytest.approx([0.386853, 1.0, 0.0, 0.386853], abs=1e-6)


def test_mrr_with_and_without_cutoff():
    outcome = Outcome.from_ranking(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), Targets.single(np.array([3, 5])))
    # Row 0: first target at rank 3 -> 1/3; row 1: at rank 1 -> 1.
    assert per_example(outcome, "mrr").tolist() == pytest.approx([1 / 3, 1.0])
    # mrr@2: row 0's target is outside the top 2 -> 0; mean (0 + 1) / 2 = 0.5.
    assert scores(outcome, "mrr@2", "mrr@4") == pytest.approx({"mrr@2": 0.5, "mrr@4": 2 / 3})


def test_accuracy_is_top1():
    outcome = Outcome.from_ranking(np.array([[1, 2], [5, 6], [9, 8]]), Targets.single(np.array([1, 6, 9])))
    # Top picks 1, 5, 9 against targets 1, 6, 9 -> [1, 0, 1], mean 2/3.
    assert per_example(outcome, "accuracy").tolist() == [1.0, 0.0, 1.0]
    assert scores(outcome, "accuracy")["accuracy"] == pytest.approx(2 / 3)


# --- off-policy metrics --------------------------------------------------------------------------


def test_ips_hand_case():
    # Uniform logging over m = [2, 40] options: propensities 1/2 and 1/40.
    both = top1_outcome([True, True], propensity=[1 / 2, 1 / 40])
    assert per_example(both, "ips").tolist() == pytest.approx([2.0, 40.0])  # 1 / (1/2), 1 / (1/40)
    assert scores(both, "ips")["ips"] == pytest.approx(21.0)  # (2 + 40) / 2
    first_only = top1_outcome([True, False], propensity=[1 / 2, 1 / 40])
    assert scores(first_only, "ips")["ips"] == pytest.approx(1.0)  # (2 + 0) / 2
    rewarded = top1_outcome([True, True], propensity=[1 / 2, 1 / 40], reward=[0.0, 0.5])
    assert scores(rewarded, "ips")["ips"] == pytest.approx(10.0)  # (0 * 2 + 0.5 * 40) / 2


def test_snips_hand_case_with_binary_rewards():
    outcome = top1_outcome([True, True, False, True], propensity=[1 / 2, 1 / 4, 1 / 2, 1 / 10], reward=[1, 0, 1, 0])
    # numerator 1*2 + 0*4 + 0 + 0*10 = 2; denominator 2 + 4 + 0 + 10 = 16 -> 0.125
    assert scores(outcome, "snips")["snips"] == pytest.approx(0.125)
    # All rewards 1 (every logged example an engagement): 1 whenever any pick matches.
    engaged = top1_outcome([True, False, False], propensity=[1 / 3, 1 / 3, 1 / 5])
    assert scores(engaged, "snips")["snips"] == pytest.approx(1.0)
    # No pick matches: the denominator is 0 and the value is defined as 0.0.
    assert scores(top1_outcome([False, False], propensity=[0.5, 0.5]), "snips")["snips"] == 0.0


def test_off_policy_metrics_need_propensity():
    for name in ("ips", "snips"):
        with pytest.raises(ValueError, match=rf"metric '{name}' needs the per-example array 'propensity'"):
            scores(top1_outcome([True]), name)
    with pytest.raises(ValueError, match=r"propensity must lie in \(0, 1\]"):
        scores(top1_outcome([True], propensity=[0.0]), "ips")


# --- names ---------------------------------------------------------------------------------------


def test_parse_metric_name():
    assert parse_metric_name("ndcg@10") == ("ndcg", 10, None)
    assert parse_metric_name("recall@1[discovery]") == ("recall", 1, "discovery")
    assert parse_metric_name("accuracy[new_users]") == ("accuracy", None, "new_users")
    assert parse_metric_name("mrr") == ("mrr", None, None)
    assert parse_metric_name("someplugin@3") == ("someplugin", 3, None)  # unknown families: syntax only


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ndcg@x", "must be a positive integer, got 'x'"),
        ("ndcg@0", "must be a positive integer, got '0'"),
        ("ndcg@", "must be a positive integer, got ''"),
        ("ndcg", "'ndcg' needs a cutoff, e.g. 'ndcg@10'"),
        ("accuracy@5", "'accuracy' takes no cutoff"),
        ("NDCG@10", "bad metric name 'NDCG@10'"),
        ("ndcg@10[", "bad metric name"),
        ("ndcg@10[Discovery]", "subset 'Discovery' must be a lower-case name"),
    ],
)
def test_parse_metric_name_errors(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_metric_name(name)


def test_unknown_metric_suggests_close_name_and_lists_known():
    with pytest.raises(UnknownNameError) as caught:
        evaluate(MULTI, ["ndgc@10"], METRICS)
    message = str(caught.value)
    assert "unknown metric 'ndgc'" in message and "Did you mean 'ndcg'?" in message
    assert "Known metrics: accuracy, hr, ips, mrr, ndcg, precision, recall, snips." in message


def test_cutoff_beyond_returned_items_is_an_error():
    with pytest.raises(ValueError, match="top 10 items, but the method returned only 4 per example"):
        evaluate(MULTI, ["ndcg@10"], METRICS)


# --- subsets -------------------------------------------------------------------------------------


def test_subset_metric():
    outcome = Outcome.from_ranking(np.array([[1], [2], [3], [4]]), Targets.single(np.array([1, 0, 3, 3])))
    # hits@1 = [1, 0, 1, 0]; subset {0, 1, 3}: (1 + 0 + 0) / 3
    subsets = {"discovery": np.array([True, True, False, True]), "none": np.zeros(4, bool)}
    result = evaluate(outcome, ["hr@1[discovery]", "hr@1", "accuracy[none]"], METRICS, subsets=subsets, n_bootstrap=50)
    assert result.summary["hr@1[discovery]"]["value"] == pytest.approx(1 / 3)
    assert result.summary["hr@1[discovery]"]["n"] == 3
    assert result.summary["hr@1"]["value"] == pytest.approx(0.5)
    assert np.array_equal(result.per_example["hr@1[discovery]"], [1.0, 0.0, np.nan, 0.0], equal_nan=True)
    empty = result.summary["accuracy[none]"]
    assert empty["n"] == 0 and all(math.isnan(empty[key]) for key in ("value", "ci_low", "ci_high"))


def test_unknown_subset_names_available_ones():
    with pytest.raises(ValueError, match=r"subset 'novel'.*Available subsets: discovery, popular"):
        evaluate(MULTI, ["hr@2[novel]"], METRICS, subsets={"popular": np.ones(2, bool), "discovery": np.ones(2, bool)})


# --- bootstrap -----------------------------------------------------------------------------------


def binary_outcome(n: int, p: float, seed: int) -> Outcome:
    hits = np.random.default_rng(seed).random((n, 1)) < p
    return Outcome(hits, np.ones(n, np.int64))


def test_bootstrap_is_deterministic_under_seed():
    outcome = binary_outcome(500, 0.3, seed=1)
    first = evaluate(outcome, ["hr@1", "mrr"], METRICS, seed=7).summary
    assert evaluate(outcome, ["mrr", "hr@1"], METRICS, seed=7).summary == first  # order of names does not matter
    assert evaluate(outcome, ["hr@1", "mrr"], METRICS, seed=8).summary["hr@1"]["ci_low"] != first["hr@1"]["ci_low"]


def test_bootstrap_interval_matches_normal_approximation():
    outcome = binary_outcome(10_000, 0.3, seed=2)
    summary = evaluate(outcome, ["hr@1"], METRICS, n_bootstrap=2000).summary["hr@1"]
    value = summary["value"]
    # A proportion's 95% interval is about value +- 1.96 * sqrt(value * (1 - value) / n) = +- 0.0090.
    half_width = 1.96 * math.sqrt(value * (1 - value) / 10_000)
    assert summary["ci_low"] < value < summary["ci_high"]
    assert summary["ci_low"] == pytest.approx(value - half_width, abs=0.0015)
    assert summary["ci_high"] == pytest.approx(value + half_width, abs=0.0015)


def test_bootstrap_interval_shrinks_with_more_examples():
    widths = []
    for n in (100, 10_000):
        summary = evaluate(binary_outcome(n, 0.3, seed=3), ["hr@1"], METRICS).summary["hr@1"]
        widths.append(summary["ci_high"] - summary["ci_low"])
    assert widths[1] < widths[0] / 5  # width scales as 1/sqrt(n): about 10 times narrower


def test_index_bootstrap_does_not_depend_on_chunk_size():
    values = np.random.default_rng(4).exponential(size=300)  # all distinct: index resampling
    one_chunk = _bootstrap_ci(values, None, 500, 0.9, np.random.default_rng(5))
    small_chunks = _bootstrap_ci(values, None, 500, 0.9, np.random.default_rng(5), chunk_elements=7 * 300)
    assert small_chunks == one_chunk
    assert one_chunk[0] < values.mean() < one_chunk[1]


def test_both_resampling_ways_agree():
    # 3000 examples with 3 distinct values take the multinomial way; adding a tiny distinct jitter
    # forces index resampling of (almost) the same data. Both are the same bootstrap distribution.
    values = np.repeat([0.0, 0.5, 1.0], [1000, 1500, 500])
    multinomial = _bootstrap_ci(values, None, 4000, 0.95, np.random.default_rng(6))
    jittered = values + np.arange(3000) * 1e-12
    indexed = _bootstrap_ci(jittered, None, 4000, 0.95, np.random.default_rng(6))
    assert multinomial != indexed  # really two different draws
    assert multinomial == pytest.approx(indexed, abs=0.002)


def test_ratio_bootstrap_for_snips():
    rng = np.random.default_rng(7)
    n = 2000
    outcome = top1_outcome(
        list(rng.random(n) < 0.4), propensity=list(1 / rng.choice([2, 4, 10], n)), reward=list(rng.random(n) < 0.25)
    )
    summary = evaluate(outcome, ["snips"], METRICS).summary["snips"]
    assert 0.0 <= summary["ci_low"] < summary["value"] < summary["ci_high"] <= 1.0


# --- registration and breakdowns -----------------------------------------------------------------


def test_registration_hook_registers_every_family_once():
    registered: list[Metric] = []
    recbench_register_metrics(registered.append)
    names = [metric.name for metric in registered]
    assert sorted(names) == ["accuracy", "hr", "ips", "mrr", "ndcg", "precision", "recall", "snips"]
    assert all(isinstance(metric, Metric) and metric.description for metric in registered)


def test_registry_accepts_builtin_metrics():
    from recbench.registry import Registry

    registry = Registry()
    recbench_register_metrics(lambda metric: registry.metrics.add(metric, "recbench.metrics"))
    assert registry.metrics.names() == ["accuracy", "hr", "ips", "mrr", "ndcg", "precision", "recall", "snips"]


def test_accuracy_by_label():
    table = accuracy_by_label(np.array([True, False, True, True, False]), np.array([0, 0, 2, 3, 3]))
    # option 0: 1 of 2 correct; option 2: 1 of 1; option 3: 1 of 2; option 1 never the answer.
    assert table["label_index"].tolist() == [0, 2, 3]
    assert table["count"].tolist() == [2, 1, 2]
    assert table["accuracy"].tolist() == pytest.approx([0.5, 1.0, 0.5])
