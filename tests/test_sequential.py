"""SASRec and BERT4Rec: conformance, the shared sequence pieces, learning, reproducibility, light imports."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from recbench.config import build_config
from recbench.errors import ConfigError
from recbench.examples import Histories
from recbench.fitting import validation_ndcg
from recbench.metrics import Outcome
from recbench.plugins.classic.bert4rec import BERT4Rec
from recbench.plugins.classic.sasrec import SASRec
from recbench.task import TaskSpec
from recbench.testing import MethodConformance, run_method, tiny_task

torch = pytest.importorskip("torch")
sequential = pytest.importorskip("recbench.sequential")

@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: OpenMP hand-offs between threads cost more than they save on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = {"max_len": 20, "hidden": 16, "blocks": 1, "dropout": 0.1, "batch_size": 32, "max_epochs": 2, "eval_every": 1,
        "patience": 1, "device": "cpu"}


class TestSASRecConformance(MethodConformance):
    method = SASRec
    config = SASRec.Config(**FAST)


class TestBERT4RecConformance(MethodConformance):
    method = BERT4Rec
    config = BERT4Rec.Config(**FAST, heads=2)


# --- the shared pieces, with known answers ---------------------------------------------------


def test_training_sequences_follow_the_tie_rule_and_keep_the_most_recent_items():
    train = pd.DataFrame({
        "user": [1, 0, 0, 0, 1, 2, 0],
        "item": [7, 5, 3, 4, 6, 9, 8],
        "timestamp": [10, 30, 20, 20, 10, 5, 40],
        "rating": np.nan,
    })
    seqs = sequential.SequenceBatches.from_train(train, length=3)
    # user 0 in time order is 3, 4 (a tie: the catalog hash rule puts 3 first), 5, 8; user 1 is 6, 7; user 2 has one item
    np.testing.assert_array_equal(seqs.batch(np.arange(len(seqs))), [[5, 6, 9], [7, 8, 0]])  # tokens are codes + 1
    np.testing.assert_array_equal(seqs.batch(np.array([1]), width=4), [[7, 8, 0, 0]])


def test_epoch_batches_cover_every_sequence_once_and_group_similar_lengths():
    lengths = np.array([1, 9, 2, 8, 3, 7, 4, 6])
    seqs = sequential.SequenceBatches.of(np.arange(1, lengths.sum() + 1), np.cumsum(lengths), lengths)
    batches = seqs.epoch_batches(2, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(8))
    padding = sum(2 * lengths[b].max() - lengths[b].sum() for b in batches)
    assert padding == 4  # sorted within the group of 4 batches: pairs (1,2), (3,4), (6,7), (8,9)


def test_scoring_inputs_hold_the_last_items_and_bert4rec_appends_its_mask():
    histories = Histories.from_lists([[0, 1, 2, 3], [5], []])
    next_item = sequential.NextItemObjective("ce").scoring_sequences(histories, 3, n_items=10)
    np.testing.assert_array_equal(next_item.batch(np.arange(3)), [[2, 3, 4], [6, 0, 0], [0, 0, 0]])
    masked = sequential.MaskedItemObjective(0.2).scoring_sequences(histories, 3, n_items=10)
    np.testing.assert_array_equal(masked.batch(np.arange(3)), [[3, 4, 11], [6, 11, 0], [11, 0, 0]])


def test_chunked_cross_entropy_matches_the_full_softmax(monkeypatch):
    monkeypatch.setattr(sequential, "LOSS_CHUNK", 7)  # several chunks and a ragged last one
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(30, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    items = torch.randn(50, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.randint(0, 50, (30,), generator=gen)
    chunked = sequential.CatalogCrossEntropy.apply(states, items, targets)
    (3 * chunked).backward()
    grads = states.grad.clone(), items.grad.clone()
    states.grad = items.grad = None
    full = torch.nn.functional.cross_entropy(states @ items.T, targets)
    (3 * full).backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(grads, (states.grad, items.grad))


def _encoder(causal: bool):
    torch.manual_seed(0)
    config = SASRec.Config(max_len=6, hidden=8, heads=2, dropout=0.0)
    return sequential.SequenceEncoder(5, config, 0.0, causal=causal, ffn_factor=1).eval()


def test_sasrec_is_causal_and_padding_changes_nothing():
    model = _encoder(causal=True)
    tokens = torch.tensor([[1, 2, 3, 4], [1, 2, 5, 4]])
    with torch.no_grad():
        states = model(tokens)
        torch.testing.assert_close(states[0, :2], states[1, :2])  # later items are invisible
        assert not torch.allclose(states[0, 3], states[1, 3])
        alone = model.last_states(torch.tensor([[1, 2]]))
        padded = model.last_states(torch.tensor([[1, 2, 0, 0], [3, 4, 5, 1]]))[:1]
    torch.testing.assert_close(alone, padded)


def test_bert4rec_sees_both_sides_and_ignores_padding():
    model = _encoder(causal=False)
    with torch.no_grad():
        states = model(torch.tensor([[1, 2, 3, 4], [1, 2, 5, 4]]))
        assert not torch.allclose(states[0, 0], states[1, 0])  # a later item changes an earlier state
        alone = model.last_states(torch.tensor([[1, 6]]))
        padded = model.last_states(torch.tensor([[1, 6, 0], [2, 3, 6]]))[:1]
    torch.testing.assert_close(alone, padded)


def test_unseen_negatives_avoid_the_row_items():
    rows = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    negatives = sequential.unseen_negatives(rows, 6, np.random.default_rng(0))
    assert negatives.min() >= 1 and negatives.max() <= 6
    assert not (negatives[:, :, None] == rows[:, None, :]).any()


# --- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [SASRec, BERT4Rec])
@pytest.mark.parametrize("settings, message", [
    ({"heads": 3}, "heads \\(3\\) must divide hidden \\(64\\)"),
    ({"dropout": 1.5}, "dropout"),
    ({"dropout": "none", "dropout_grid": ""}, "dropout_grid"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_settings_are_rejected_with_the_reason(method, settings, message):
    with pytest.raises(ConfigError, match=message):
        build_config(method.Config, settings, owner=method.name)


def test_sasrec_loss_must_be_ce_or_bce():
    with pytest.raises(ConfigError, match="'softmax' is not one of \\['ce', 'bce'\\]"):
        build_config(SASRec.Config, {"loss": "softmax"}, owner="sasrec")


# --- learning and reproducibility ------------------------------------------------------------


@lru_cache(maxsize=None)
def _learnable_task():
    """A synthetic fullrank task large enough that random ranking rarely hits (tiny data's 50 items make it easy)."""
    from recbench.manager import load_registry
    from recbench.plugins.datasets.synthetic import make_synthetic

    spec = TaskSpec(name="seq-check", version=1, kind="fullrank", dataset="synthetic", description="learning check",
                    metrics=("hr@10",), primary_metric="hr@10", params={"k": 10})
    task = load_registry().task_kinds.get("fullrank")(spec)
    return task, task.build(make_synthetic(n_users=200, n_items=100, n_interactions=4000, seed=3))


@pytest.mark.parametrize("method, settings", [
    (SASRec, {"max_epochs": 3}), (SASRec, {"max_epochs": 3, "loss": "bce"}), (BERT4Rec, {"max_epochs": 6, "heads": 2}),
])
def test_beats_random_after_a_few_epochs(method, settings):
    task, data = _learnable_task()
    config = method.Config(**{**FAST, "max_len": 50, "lr": 5e-3, "eval_every": 3, **settings})
    items = run_method(method, config, 0, task, data, batch_size=512).items
    hit_rate = Outcome.from_ranking(items, data.test_targets).hits.any(axis=1).mean()
    # a random ranking of the unseen items hits with probability 10 / (number of unseen items)
    unseen = data.fit.catalog.n_items - data.test_inputs.histories.lengths
    random_hit_rate = np.minimum(10 / unseen, 1.0).mean()
    assert hit_rate > 2.5 * random_hit_rate, f"{method.name} {settings}: HR@10 {hit_rate:.3f}, random {random_hit_rate:.3f}"


def test_same_seed_same_scores_and_global_rng_untouched():
    task, data = tiny_task("fullrank")
    config = SASRec.Config(**{**FAST, "dropout": None, "dropout_grid": (0.1, 0.3)})
    before = torch.get_rng_state()
    first, second, other = SASRec(config, seed=5), SASRec(config, seed=5), SASRec(config, seed=6)
    for method in (first, second, other):
        method.fit(data.fit)
    assert torch.equal(before, torch.get_rng_state()), "fit must not move torch's global random state"
    scores = first.score(data.test_inputs)
    np.testing.assert_array_equal(scores, second.score(data.test_inputs))
    assert first.describe()["curve"] == second.describe()["curve"]
    assert not np.array_equal(scores, other.score(data.test_inputs)), "a different seed must train a different model"


def test_early_stopping_keeps_the_best_checkpoint():
    task, data = tiny_task("fullrank")
    config = SASRec.Config(**{**FAST, "lr": 1e-2, "max_epochs": 40, "patience": 2, "eval_every": 1})
    method = SASRec(config, seed=0)
    method.fit(data.fit)
    fitted = method.describe()
    assert fitted["epochs_run"] < config.max_epochs, "training should have stopped early"
    assert fitted["epochs_run"] == fitted["best_epoch"] + config.patience
    best = max(ndcg for _, ndcg in fitted["curve"])
    assert fitted["validation_ndcg@10"] == pytest.approx(best, abs=1e-4)
    # the kept weights are the best epoch's, not the last one's
    assert validation_ndcg(method.score, data.fit.valid, data.fit.valid_targets) == pytest.approx(
        fitted["validation_ndcg@10"], abs=1e-6)


def test_plugin_modules_do_not_import_torch():
    code = ("import sys, recbench.plugins.classic.sasrec, recbench.plugins.classic.bert4rec; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
