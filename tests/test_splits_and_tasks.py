"""Splits and task builders on frames whose rows can be counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recbench.data.catalog import build_catalog, sort_interactions, tie_key
from recbench.errors import ConfigError
from recbench.examples import Histories
from recbench.runner import audit_no_target_leak
from recbench.splits import global_temporal_split, leave_one_out, user_random_split
from recbench.testing import tiny_task


def _catalog(rows, n_items=30):
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame({"item_id": [str(i) for i in range(n_items)], "title": [f"Film {i}" for i in range(n_items)]})
    return build_catalog("hand", inter, items, None, source={"kind": "test"})


def test_leave_one_out_counts_and_targets():
    rows = [("a", i, 10 * i, 4) for i in range(5)] + [("b", 10 + i, 5 * i, 3) for i in range(3)] + [("c", 20, 1, 5), ("c", 21, 2, 5)]
    split = leave_one_out(_catalog(rows).interactions, min_interactions=3)
    assert len(split.users) == 2  # user c has 2 interactions: training only
    assert split.n_train_only_users == 1
    assert len(split.train) == 10 - 4  # two held out per evaluated user
    frame = split.sequences.frame
    assert frame.loc[split.test_rows, "timestamp"].tolist() == [40, 10]
    assert frame.loc[split.valid_rows, "timestamp"].tolist() == [30, 5]


def test_equal_timestamps_follow_the_hash_tie_rule_whatever_the_file_order():
    # user a rated items 7, 3 and 5 at the same second, after item 1
    rows = [("a", 1, 100, 4), ("a", 7, 200, 4), ("a", 3, 200, 4), ("a", 5, 200, 4)]
    first = _catalog(rows)
    second = _catalog(list(reversed(rows)))
    assert first.content_hash() == second.content_hash()
    codes = first.interactions["item"].to_numpy()
    tied = codes[1:]
    expected = tied[np.argsort(tie_key(np.zeros(3, int), tied))]
    np.testing.assert_array_equal(tied, expected)  # ties ordered by the hash, not by item code
    for catalog in (first, second):
        split = leave_one_out(catalog.interactions)
        frame = catalog.interactions
        assert frame["item"].to_numpy()[split.test_rows].tolist() == [expected[-1]]
        assert frame["item"].to_numpy()[split.valid_rows].tolist() == [expected[-2]]


def test_a_catalog_cached_under_another_tie_rule_is_reordered(tmp_path):
    import json

    catalog = _catalog([("a", 1, 100, 4), ("a", 7, 200, 4), ("a", 3, 200, 4), ("a", 5, 200, 4)])
    catalog.save(tmp_path)
    stale = catalog.interactions.sort_values(["user", "timestamp", "item"]).reset_index(drop=True)
    stale.to_parquet(tmp_path / "interactions.parquet")
    meta = json.loads((tmp_path / "catalog.json").read_text())
    meta["tie_rule"] = "timestamp,item_code"
    (tmp_path / "catalog.json").write_text(json.dumps(meta))
    from recbench.data.catalog import Catalog

    pd.testing.assert_frame_equal(Catalog.load(tmp_path).interactions, catalog.interactions)


def test_hash_tie_rule_does_not_follow_item_order():
    users = np.zeros(1000, dtype=int)
    items = np.arange(1000)
    rank = np.argsort(np.argsort(tie_key(users, items)))
    assert abs(np.corrcoef(rank, items)[0, 1]) < 0.1


def test_sort_interactions_is_deterministic_for_shuffled_input():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 5, 200), "item": rng.integers(0, 50, 200),
                          "timestamp": rng.integers(0, 3, 200), "rating": np.ones(200, np.float32)})
    a = sort_interactions(frame)
    b = sort_interactions(frame.sample(frac=1, random_state=1))
    pd.testing.assert_frame_equal(a, b)


def test_user_random_split_fractions_and_seed():
    users = np.arange(100)
    train, valid, test = user_random_split(users, (0.7, 0.15, 0.15), seed=3)
    assert (len(train), len(valid), len(test)) == (70, 15, 15)
    assert len(np.intersect1d(train, test)) == 0 and len(np.union1d(np.union1d(train, valid), test)) == 100
    again = user_random_split(users, (0.7, 0.15, 0.15), seed=3)
    assert all((x == y).all() for x, y in zip((train, valid, test), again))
    with pytest.raises(ValueError, match="sum to 1"):
        user_random_split(users, (0.7, 0.2), seed=0)


def test_global_temporal_split_puts_ties_at_the_cut_later():
    frame = pd.DataFrame({"user": 0, "item": range(10), "timestamp": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "rating": 1.0})
    train, valid, test = global_temporal_split(frame, (0.6, 0.8))
    assert (len(train), len(valid), len(test)) == (5, 2, 3)
    assert train["timestamp"].max() < valid["timestamp"].min() <= valid["timestamp"].max() < test["timestamp"].min()


def test_histories_take_matches_lists():
    h = Histories.from_lists([[1, 2], [], [3, 4, 5]], [[1, 2], [], [3, 4, 5]])
    sub = h.take(np.array([2, 0]))
    assert [sub.items_of(i).tolist() for i in range(2)] == [[3, 4, 5], [1, 2]]
    assert h.take(np.array([1, 2])).items_of(1).tolist() == [3, 4, 5]


def test_fullrank_test_history_contains_everything_before_target():
    task, data = tiny_task("fullrank")
    inputs, targets = data.test_inputs, data.test_targets
    valid = data.fit.valid
    for row in range(len(inputs)):
        hist = inputs.histories.items_of(row)
        # validation target is the last item of the test history, and the test target is not in it
        assert hist[-1] == data.fit.valid_targets.items_of(row)[0]
        assert targets.items_of(row)[0] not in hist
        assert len(valid.histories.items_of(row)) == len(hist) - 1
    audit_no_target_leak(data.fit, inputs, targets)


def test_rerank_candidates_hold_target_and_unseen_negatives():
    task, data = tiny_task("rerank", {"max_history": 8})
    inputs, targets = data.test_inputs, data.test_targets
    assert inputs.candidates.shape == (len(inputs), 10)
    assert inputs.histories.lengths.max() <= 8
    catalog_inter = None
    from recbench.testing import tiny_catalog

    catalog_inter = tiny_catalog().interactions
    seen = catalog_inter.groupby("user")["item"].apply(set).to_dict()
    positions = []
    for row in range(len(inputs)):
        cands = inputs.candidates[row].tolist()
        target = int(targets.items_of(row)[0])
        assert len(set(cands)) == 10 and target in cands
        negatives = set(cands) - {target}
        assert not negatives & seen[int(inputs.users[row])]
        positions.append(cands.index(target))
    assert len(set(positions)) > 3  # the target is not always in the same slot
    assert data.subsets["discovery"].all()  # MovieLens-like data has no repeats
    # the same sampling seed gives the same candidates
    _, again = tiny_task("rerank", {"max_history": 8})
    np.testing.assert_array_equal(inputs.candidates, again.test_inputs.candidates)
    _, other = tiny_task("rerank", {"max_history": 8, "sampling_seed": 1})
    assert not np.array_equal(inputs.candidates, other.test_inputs.candidates)


def test_topk_hides_the_future_of_evaluated_users():
    task, data = tiny_task("topk")
    inputs, targets = data.test_inputs, data.test_targets
    train = data.fit.train
    for row in range(len(inputs)):
        user, as_of = int(inputs.users[row]), int(inputs.as_of[row])
        user_train = train[train["user"] == user]
        assert (user_train["timestamp"] <= as_of).all()
        assert 1 <= len(targets.items_of(row)) <= 5
        assert len(inputs.histories.items_of(row)) >= 5
    assert set(inputs.attributes.columns) == {"release_cutoff"}
    assert not set(inputs.users) & set(data.fit.valid.users)
    audit_no_target_leak(data.fit, inputs, targets)


NAN = float("nan")
# user a: windows of 4 hold >= 2 liked and >= 2 disliked only before positions 4 and 5 (dislikes at 1, 3, 9, 11);
# b never dislikes; c would qualify before 4 and 8 if its unrated interactions counted as disliked
WINDOW_RATINGS = {
    "a": [5, 1, 5, 1, 5, 5, 5, 5, 5, 1, 5, 1],
    "b": [5, 4, 3, 5, 4, 3, 5, 4, 3, 5, 4, 3],
    "c": [5, 5, 1, NAN, NAN, 5, 1, 5, 5],
}


def _topk_on(catalog, **params):
    from recbench.task import TaskSpec
    from recbench.tasks.topk import TopKTask

    params = {"k": 2, "min_history": 1, "history_window": 4, "horizon": 2, "user_fractions": (0, 0, 1), **params}
    spec = TaskSpec(name="hand-topk", version=1, kind="topk", dataset="hand", description="window rule",
                    metrics=("hr@1",), primary_metric="hr@1", params=params)
    return TopKTask(spec)


def _window_catalog(ratings=WINDOW_RATINGS):
    rows = [(user, 10 * u + pos, 100 * pos, r) for u, (user, rs) in enumerate(ratings.items()) for pos, r in enumerate(rs)]
    return _catalog(rows, n_items=40)


def test_topk_cutoffs_keep_min_liked_and_disliked_in_the_window_and_skip_users_without_one():
    catalog = _window_catalog()
    drawn = set()
    for seed in range(12):
        data = _topk_on(catalog, min_liked_disliked=2, split_seed=seed).build(catalog)
        inputs = data.test_inputs
        assert inputs.keys.tolist() == ["a"]
        assert data.stats["window_skipped_test_users"] == data.stats["window_skipped_users"] == 2  # b and c
        assert data.stats["ineligible_users"] == 0
        ratings = inputs.histories.ratings
        assert (ratings >= 3).sum() >= 2 and (ratings < 3).sum() >= 2
        cutoff = int(inputs.as_of[0]) // 100
        drawn.add(cutoff)
        # the skipped users' interactions all stay in training; of a's only those before the cutoff
        assert len(data.fit.train) == len(WINDOW_RATINGS["b"]) + len(WINDOW_RATINGS["c"]) + cutoff
    assert drawn == {4, 5}  # only the valid cutoffs, and both of them


def test_topk_without_the_window_rule_draws_the_cutoffs_of_earlier_versions():
    catalog = _window_catalog()
    lengths = np.array([len(r) for r in WINDOW_RATINGS.values()])
    for seed in range(5):
        data = _topk_on(catalog, min_liked_disliked=0, split_seed=seed).build(catalog)
        rng = np.random.default_rng(seed + 1)  # the earlier draw: the (empty) validation group, then test
        rng.integers(1, np.array([], dtype=np.int64))
        expected = rng.integers(1, lengths)
        assert data.test_inputs.keys.tolist() == ["a", "b", "c"]
        assert (data.test_inputs.as_of // 100).tolist() == expected.tolist()
        assert data.stats["window_skipped_users"] == 0


def test_topk_window_rule_needs_ratings():
    catalog = _window_catalog({user: [NAN] * len(r) for user, r in WINDOW_RATINGS.items()})
    task = _topk_on(catalog)  # the default rule: 5 liked and 5 disliked
    for check in (task.build, task.protocol):
        with pytest.raises(ConfigError, match=r"has none.*--set task.min_liked_disliked=0"):
            check(catalog)
    assert len(_topk_on(catalog, min_liked_disliked=0).build(catalog).test_inputs) == 3


def test_protocol_fingerprint_changes_with_params_and_seed():
    from recbench.testing import tiny_catalog

    catalog = tiny_catalog()
    task_a, _ = tiny_task("rerank")
    task_b, _ = tiny_task("rerank", {"sampling_seed": 5})
    fp_a, fp_b = task_a.protocol(catalog)["fingerprint"], task_b.protocol(catalog)["fingerprint"]
    assert fp_a != fp_b
    assert task_a.protocol(catalog)["fingerprint"] == fp_a  # stable
    assert task_a.protocol(catalog)["tie_rule"] == "timestamp,splitmix64(user_code,item_code)"
