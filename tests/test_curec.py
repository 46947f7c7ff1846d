"""CURec (#18): the rule rewards, the reason-aware recommender on a toy batch, the chronological correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recbench.llm.rewards import RewardSpec, build_reward, combine
from test_session_embed import tiny_st  # noqa: F401  (the tiny sentence-transformers fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # shared 2-core machines: no OpenMP oversubscription

THINK_ROW = {"reader": "choice", "output": "think", "options": ["Heat (1995)", "Babe (1995)", "Fargo (1996)"], "gold": [1]}


@pytest.mark.parametrize("reply, expected", [
    ("<think>likes crime films</think><answer>2</answer>", (1, 1, 1)),  # the target, well formed
    ("<think>likes crime films</think><answer>1</answer>", (1, 1, 0)),  # a wrong candidate
    ("<think>hmm</think><answer>7</answer>", (1, 0, 0)),  # well formed, not a candidate
    ("<think>no closing tag <answer>2</answer>", (0, 1, 1)),  # right number, reasoning never closed
    ("<think>I cannot decide", (0, 0, 0)),
    ("<think>1. Heat 2. Babe 3. Fargo", (0, 0, 0)),  # lists the candidates: commits to none
    ("<think>it is Babe</think> 2", (0, 0, 0)),  # a number outside the answer tag is no answer
    ("<think>x</think><answer>2 or 3</answer>", (1, 0, 0)),  # two options in the tag: well formed, not legal
])
def test_rule_rewards_on_hand_written_replies(reply, expected):
    values = tuple(build_reward(RewardSpec(name))([reply], [THINK_ROW])[0] for name in ("format", "legal", "correct"))
    assert values == expected
    total = combine([RewardSpec.parse(s) for s in ("format", "legal", "correct")])([reply], [THINK_ROW])
    assert total[0] == sum(expected)


def test_a_changed_reward_meaning_keys_new_checkpoints():
    assert RewardSpec("legal").to_dict()["revision"] == 2 and "revision" not in RewardSpec("format").to_dict()


def test_group_advantages_standardise_within_groups():
    from recbench.llm.trainers.group_step import group_advantages

    out = group_advantages(np.array([1.0, 3.0, 2.0, 2.0]), 2)
    assert np.allclose(out, [-1 / np.sqrt(2), 1 / np.sqrt(2), 0.0, 0.0])  # (r - mean) / sample std; no spread: 0


def test_group_step_gradient_is_the_same_in_chunks():
    """A GRPO step's gradient accumulated over chunks of replies is the gradient of one pass over all of them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbench.llm.models import resolve_model
    from recbench.llm.trainers.group_step import GroupStepConfig, GroupStepTrainer

    folder = resolve_model("tiny-random-llama").path
    after, records = [], []
    for chunk in (8, 3):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        config = GroupStepConfig(num_generations=4, max_new_tokens=5, lr=1e-2, backward_batch=chunk)
        trainer = GroupStepTrainer(model, AutoTokenizer.from_pretrained(folder), config, seed=0,
                                   reward_fn=lambda texts, rows: [len(t) for t in texts])  # longer is better
        records.append(trainer.step(["a longer first prompt", "hi"], [0, 1]))
        after.append(torch.cat([p.grad.flatten() for p in model.parameters()]))  # left in place by the step
    assert records[0]["reward"] == records[1]["reward"] and records[0]["loss"] == pytest.approx(records[1]["loss"], abs=1e-6)
    assert records[0]["frac_reward_zero_std"] < 1 and after[0].abs().max() > 0  # some group had spread: a real gradient
    torch.testing.assert_close(after[0], after[1], rtol=1e-4, atol=1e-7)


def test_tagged_text_keeps_unparsed_replies_raw():
    from recbench.plugins.llm.curec_text import tagged_text

    assert tagged_text("<think>x</think><reason>Same director.</reason>", "reason") == ("Same director.", True)
    assert tagged_text("<think>x</think>It is a comedy.", "reason") == ("It is a comedy.", False)
    # the prompt's placeholder echoed back is not a parse; its raw text, tags removed, has no word either
    assert tagged_text("<think>...</think><pattern>...</pattern><reason>...</reason>", "pattern") == ("", False)
    assert tagged_text("<think>hm</think><pattern> </pattern> Likes noir.", "pattern") == ("Likes noir.", False)


# --- the reason-aware recommender -------------------------------------------------------------------


def toy_model(fusion: str):
    import torch

    from recbench.plugins.llm.curec_model import ReasonBank, ReasonModelConfig, ReasonRecommender

    torch.manual_seed(0)
    config = ReasonModelConfig(fusion=fusion, hidden=8, heads=2, blocks=1, max_len=6, dropout=0.0, max_reasons=3)
    model = ReasonRecommender(12, 5, config).eval()
    bank = ReasonBank(5, n_users=4, n_items=12)
    rng = np.random.default_rng(0)
    for user in (0, 1, 2):  # user 3 has no pattern
        bank.set_pattern(user, rng.normal(size=5))
    for item in range(1, 12):  # item 0 has no reasons
        for _ in range(item % 4 + 1):  # up to 4 reasons; the item keeps its last 3
            bank.add_reason(item, rng.normal(size=5))
    return model, bank


@pytest.mark.parametrize("fusion", ["attention", "ap", "mlp", "sa"])
def test_reason_model_shapes_and_pair_scores(fusion):
    import torch

    model, bank = toy_model(fusion)
    tokens = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
    users = np.array([0, 3, 2])
    queries = model.queries(torch.from_numpy(bank.patterns[users]), torch.from_numpy(bank.has_pattern[users]))
    keys, mask = model.keys(*bank.reason_tensor(3))
    assert keys.shape == (12, 4, 8) and mask.shape == (12, 4) and mask[:, 0].all()  # the "no reason" slot first
    assert mask[0].tolist() == [True, False, False, False]
    with torch.no_grad():
        states = model.encoder.last_states(tokens)
        logits = model.catalog_logits(states, queries, keys, mask)
        assert logits.shape == (3, 12) and torch.isfinite(logits).all()
        items = torch.tensor([0, 5, 11])
        pairs = model.pair_scores(states, queries, items, keys[items], mask[items])
    assert torch.allclose(pairs, logits[torch.arange(3), items], atol=1e-5)


def test_item_without_reasons_attends_to_the_slot_alone():
    import torch

    model, bank = toy_model("attention")
    keys, mask = model.keys(*bank.reason_tensor(3, items=np.array([0])))
    with torch.no_grad():
        a = model.match(torch.randn(1, 8), keys, mask)
        b = model.match(torch.randn(1, 8), keys, mask)
        slot_value = model.out(model.value(model.no_reason))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a[0, 0], slot_value, atol=1e-6)


def test_nll_loss_is_full_softmax_cross_entropy_and_trains():
    import torch

    from recbench.plugins.llm.curec_model import nll_loss

    model, bank = toy_model("attention")
    tokens = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    users = np.array([0, 1])
    loss = nll_loss(model, bank, tokens, users, np.random.default_rng(0), positions=10)  # every position
    with torch.no_grad():
        states = model.encoder(torch.tensor([[1, 2, 0], [4, 5, 6]]))
        rows, cols = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 1, 0, 1, 2])
        u = users[rows.numpy()]
        q = model.queries(torch.from_numpy(bank.patterns[u]), torch.from_numpy(bank.has_pattern[u]))
        logits = model.catalog_logits(states[rows, cols], q, *model.keys(*bank.reason_tensor(3)))
        expected = -torch.log_softmax(logits, dim=1)[torch.arange(5), torch.tensor([2, 3, 5, 6, 7]) - 1].mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        optimizer.zero_grad()
        step_loss = nll_loss(model, bank, tokens, users, np.random.default_rng(0), positions=10)
        step_loss.backward()
        optimizer.step()
    assert float(step_loss.detach()) < float(loss.detach())


# --- chronological correction ----------------------------------------------------------------------


def test_correction_runs_windows_in_time_order_and_reads_only_the_past():
    from recbench.plugins.llm.curec import correct_chronologically, correction_inputs

    train = pd.DataFrame({"user": [0, 0, 0, 0, 1, 1, 1, 2, 2],
                          "item": [10, 11, 12, 13, 20, 21, 22, 30, 31],
                          "timestamp": [1, 5, 9, 100, 2, 6, 95, 3, 97]})  # sorted by user, then time
    rows = np.array([1, 2, 3, 5, 6, 8])
    rows = rows[np.argsort(train["timestamp"].to_numpy()[rows], kind="stable")]
    ts = train["timestamp"].to_numpy()[rows]
    calls = []
    step = lambda positions: calls.append(("step", rows[positions].tolist()))  # noqa: E731
    refresh = lambda positions: calls.append(("refresh", rows[positions].tolist()))  # noqa: E731
    report = correct_chronologically(ts, windows=4, batch=2, step=step, refresh=refresh)
    # spans of (100 - 5) / 4: [5, 28.75) holds 5, 6, 9; the middle two are empty; [76.25, 100] holds 95, 97, 100
    assert report == {"windows": 4, "windows_run": 2, "windows_skipped": 2, "correction_steps": 4}
    assert calls == [("step", [1, 5]), ("step", [2]), ("refresh", [1, 5, 2]),
                     ("step", [6, 8]), ("step", [3]), ("refresh", [6, 8, 3])]
    seen = [r for kind, rs in calls if kind == "step" for r in rs]
    assert np.all(np.diff(train["timestamp"].to_numpy()[seen]) >= 0)
    users, items, histories = correction_inputs(train, np.array(seen), history=10)
    for k, row in enumerate(seen):
        earlier = train[(train["user"] == users[k]) & (train["timestamp"] < train["timestamp"][row])]["item"].tolist()
        assert histories.items_of(k).tolist() == earlier  # never the interaction itself or a later one
    assert items.tolist() == train["item"].to_numpy()[seen].tolist()


def test_alignment_candidates_are_the_target_and_never_seen_items():
    from recbench.plugins.llm.curec_text import candidate_examples

    train = pd.DataFrame({"user": [0, 0, 0, 0, 1, 1], "item": [0, 1, 2, 3, 4, 5], "timestamp": [1, 2, 3, 4, 1, 2]})
    examples, targets = candidate_examples(train, np.array([2, 3, 5]), n_items=9, negatives=4, history=10,
                                           rng=np.random.default_rng(0))
    for row, (user, seen) in enumerate([(0, {0, 1, 2, 3}), (0, {0, 1, 2, 3}), (1, {4, 5})]):
        options = examples.candidates[row]
        target = int(targets.items_of(row)[0])
        assert sorted(options.tolist()).count(target) == 1 and len(set(options.tolist())) == 5
        assert not (set(options.tolist()) - {target}) & seen  # negatives: items the user never interacted with
    assert [examples.histories.items_of(r).tolist() for r in range(3)] == [[0, 1], [0, 1, 2], [4]]


# --- the whole method, tiny ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["curec", "curec_ap"])
def test_curec_runs_end_to_end_on_a_tiny_task(name, tiny_st, tmp_path, monkeypatch):
    """Alignment, patterns and reasons, the recommender, then correction, with a tiny random LLM and embedder.
    The random LLM's greedy text holds no word, so pattern and reason writing answers canned tagged replies
    (else no user has a pattern and correction never runs); correction samples from the policy itself."""
    from recbench.llm.trainers.group_step import GroupStepTrainer
    from recbench.manager import load_registry
    from recbench.testing import run_method, tiny_task

    monkeypatch.setenv("RECBENCH_HOME", str(tmp_path))  # checkpoints and generation caches of its own
    method = load_registry().methods.get(name)
    canned = "<think>x</think><pattern>Likes comedy and drama.</pattern><reason>Same genre as before.</reason>"
    monkeypatch.setattr(method, "generate", lambda self, backend, prompts, tokens: [canned] * len(prompts))
    steps, step = [], GroupStepTrainer.step
    monkeypatch.setattr(GroupStepTrainer, "step", lambda self, *a: steps.append(step(self, *a)) or steps[-1])
    task, data = tiny_task("fullrank")
    config = method.Config(model="tiny-random-llama", embedder=tiny_st, align_prompts=4, align_valid=2, align_tokens=6,
                           align_history_tokens=32, group_size=2, prompts_per_step=2, history_items=3, pattern_users=3,
                           reasons_per_user=1, text_tokens=6, windows=2, correction_interactions=4, correction_batch=2,
                           correction_backward=1, hidden=8, heads=2, blocks=1, max_len=5, rm_epochs=2, rm_batch=8,
                           positions_per_user=2, gen_batch_size=4)
    out = run_method(method, config, 0, task, data, batch_size=64)
    assert out.items.shape[0] == len(data.test_inputs)
    assert all(e["pattern"] == "Likes comedy and drama." for e in out.extras if e["pattern"] is not None)
    assert any(e["pattern"] is not None for e in out.extras) and len(steps) >= 2  # two windows: correction ran
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["reward"]) for r in steps)
