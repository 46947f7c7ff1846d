"""The session task: the cutter on hand-built sequences, the split and its absence of leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recbench.data.catalog import build_catalog
from recbench.runner import audit_no_target_leak
from recbench.splits import UserSequences
from recbench.task import TaskSpec
from recbench.tasks.session import SessionTask, cut_sessions
from recbench.testing import tiny_catalog


def _catalog(rows, n_items=40):
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame({"item_id": [str(i) for i in range(n_items)], "title": [f"Film {i}" for i in range(n_items)]})
    return build_catalog("hand", inter, items, None, source={"kind": "test"})


def _task(**params):
    spec = TaskSpec(name="s", version=1, kind="session", dataset="hand", description="", metrics=("ndcg@20",),
                    primary_metric="ndcg@20", params=params)
    return SessionTask(spec)


def test_cutter_counts_windows_repeats_tails_and_short_users():
    rows = [("a", i, i, 4) for i in range(12)]  # 2 windows + 2 left over
    rows += [("b", i, i, 4) for i in (1, 2, 1, 3, 4, 5, 6, 7, 8, 9)]  # first window repeats item 1
    rows += [("c", i, i, 4) for i in range(3)]  # too short
    catalog = _catalog(rows)
    frame = catalog.interactions
    s = cut_sessions(UserSequences.of(frame), frame["item"].to_numpy(), history=4)
    assert s.counts == {"users_too_short": 1, "windows_with_repeats": 1, "tail_interactions_left_out": 2 + 3, "sessions": 3}
    ids = catalog.items["item_id"].to_numpy()
    got = [[int(ids[frame["item"].iloc[r]]) for r in row] for row in s.rows]
    assert got == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [5, 6, 7, 8, 9]]


def test_sessions_are_distinct_and_splits_do_not_leak():
    task = _task(k=5, fractions=(0.6, 0.2, 0.2))
    catalog = tiny_catalog()
    data = task.build(catalog)
    fit = data.fit
    n = len(fit.train_examples) + len(fit.valid) + len(data.test_inputs)
    assert n == data.stats["sessions"] > 50
    for ex, t in ((fit.train_examples, fit.train_targets), (fit.valid, fit.valid_targets), (data.test_inputs, data.test_targets)):
        for i in range(len(ex)):
            five = [*ex.histories.items_of(i), *t.items_of(i)]
            assert len(five) == 5 and len(set(five)) == 5
    # no interaction of a validation or test session reaches the training frame
    frame = catalog.interactions
    train_keys = set(zip(fit.train["user"], fit.train["item"], fit.train["timestamp"]))
    for ex, t in ((fit.valid, fit.valid_targets), (data.test_inputs, data.test_targets)):
        for i in range(len(ex)):
            u = ex.users[i]
            assert (u, t.items[i], ex.as_of[i]) not in train_keys
            for item, ts in zip(ex.histories.items_of(i), ex.histories.timestamps_of(i)):
                assert (u, item, ts) not in train_keys
    # the three splits share no session (by user and first timestamp)
    starts = [{(u, ex.histories.timestamps_of(i)[0]) for i, u in enumerate(ex.users)}
              for ex in (fit.train_examples, fit.valid, data.test_inputs)]
    assert not (starts[0] & starts[1]) and not (starts[0] & starts[2]) and not (starts[1] & starts[2])
    assert len(fit.train) + 5 * (len(fit.valid) + len(data.test_inputs)) + data.stats["train_rows_dropped_repeating_held_out_target"] \
        == 5 * n
    audit_no_target_leak(fit, data.test_inputs, data.test_targets)
    audit_no_target_leak(fit, fit.valid, fit.valid_targets)
    assert len(frame) >= len(fit.train)


def test_split_fractions_and_cut_rule_in_fingerprint():
    catalog = _catalog([(u, (7 * u + i) % 40, i, 4) for u in range(50) for i in range(10)])
    data = _task().build(catalog)
    assert (len(data.fit.train_examples), len(data.fit.valid), len(data.test_inputs)) == (84, 8, 8)
    a, b = _task().protocol(catalog), _task(history=3).protocol(catalog)
    assert "non-overlapping windows of 5" in a["split"]["sessions"]
    assert a["fingerprint"] != b["fingerprint"]


def test_train_fraction_keeps_a_seeded_subset_of_training_sessions_only():
    catalog = _catalog([(u, (7 * u + i) % 40, i, 4) for u in range(50) for i in range(10)])
    full, tenth = _task().build(catalog), _task(train_fraction=0.1).build(catalog)
    assert len(tenth.fit.train_examples) == 8 and len(tenth.fit.train) == 8 * 5
    assert set(tenth.fit.train_examples.keys) <= set(full.fit.train_examples.keys)
    assert list(tenth.test_inputs.keys) == list(full.test_inputs.keys)
    assert list(tenth.fit.valid.keys) == list(full.fit.valid.keys)
