"""RLHF pieces: preference pairs ranked by the task's metric, the reward model, PPO by hand and on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recbench.llm.preferences import PreferenceReport, preference_pairs, rank_pairs, sample_replies
from recbench.llm.rewards import RewardSpec, build_reward


@pytest.fixture
def title_row(tmp_path):
    catalog = tmp_path / "catalog.json"
    pd.DataFrame({"title": ["Alpha Road", "Beta Garden", "Gamma Tower"], "year": [1990, 1991, 1995]}).to_json(
        catalog, orient="records")
    return {"reader": "titles", "catalog": str(catalog), "threshold": 80.0, "k": 5, "gold": [0, 2]}


# --- preference pairs ----------------------------------------------------------------------------


def test_rank_pairs_orders_by_score_and_drops_ties():
    report = PreferenceReport()
    pairs = rank_pairs(["a", "b", "c", "d", "a"], [0.5, 0.2, 0.5, 0.0, 0.5], report)
    # 10 candidate pairs: (0,2) and (2,4) tie, (0,4) is the same text; 7 are kept, higher score chosen
    assert report.candidate_pairs == 10 and report.pairs_dropped_tied == 2 and report.pairs_dropped_same_text == 1
    assert sorted(pairs) == sorted([(0, 1), (0, 3), (2, 1), (1, 3), (2, 3), (4, 1), (4, 3)])
    assert report.pairs_built == 7


def test_preference_pairs_score_by_ndcg_and_count_ungrounded_replies(title_row):
    ndcg = build_reward(RewardSpec("metric", args={"name": "ndcg@5"}))
    both = "['Alpha Road (1990)', 'Gamma Tower (1995)']"
    one = "['Beta Garden (1991)', 'Gamma Tower (1995)']"
    nothing, garbage = "['Zzzz Qqqq', 'Wwww Xxxx']", "no list at all"
    prompt = SimpleNamespace(messages=({"role": "user", "content": "five titles"},))
    pairs, report = preference_pairs([prompt], [[both, one, nothing, garbage]], [title_row], ndcg)
    # both > one > nothing == garbage (0, a tie: dropped); 6 candidates, 5 kept
    assert report.ungrounded_samples == 2 and report.samples == 4
    assert report.pairs_built == 5 and report.pairs_dropped_tied == 1
    first = pairs[0]
    assert first["chosen"][0]["content"] == both and first["rejected"][0]["content"] == one
    assert first["score_chosen"] == pytest.approx(1.0)
    assert first["score_rejected"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert all(p["prompt"] == [{"role": "user", "content": "five titles"}] for p in pairs)
    assert {p["rejected"][0]["content"] for p in pairs if p["score_rejected"] == 0} == {nothing, garbage}
    # a prompt whose replies all ground to nothing gives no pair and is counted
    pairs, report = preference_pairs([prompt], [[nothing, garbage, "['Qq']"]], [title_row], ndcg)
    assert pairs == [] and report.prompts_without_pairs == 1 and report.ungrounded_samples == 3
    assert report.to_dict()["pref_pairs_dropped_tied"] == 3


def test_the_distinct_reward_counts_grounded_titles_without_repeats_over_k(title_row):
    distinct = build_reward(RewardSpec("distinct"))
    replies = ["['Alpha Road (1990)', 'Gamma Tower (1995)', 'Alpha Road (1990)']", "['Beta Garden', 'Zzzz Qqqq']",
               "no list at all"]
    assert distinct(replies, [title_row] * 3) == [2 / 5, 1 / 5, 0.0]


def test_training_pairs_are_capped_by_a_seeded_draw(monkeypatch):
    from recbench.plugins.llm.rlhf import RLHFDPO

    method = RLHFDPO(RLHFDPO.Config(max_pairs=3), seed=0)
    built = [{"prompt": [], "chosen": [i], "rejected": []} for i in range(10)]
    monkeypatch.setattr(method, "preference_pairs", lambda sft, examples, targets: (list(built), {"pref_pairs_built": 10}))
    pairs, report = method.training_pairs(None, None, None)
    assert len(pairs) == 3 and report == {"pref_pairs_built": 10, "pref_pairs_kept": 3}
    assert pairs == method.training_pairs(None, None, None)[0] and all(p in built for p in pairs)
    with pytest.raises(ValueError, match="max_pairs"):
        RLHFDPO.Config(max_pairs=0)


def test_sampling_asks_n_replies_per_prompt_once_and_keeps_the_prefix():
    calls = []

    class Backend:
        def generate(self, prompts, params):
            calls.append((len(prompts), params.num_return_sequences, params.temperature))
            return [[SimpleNamespace(text=f"{i}-{j}']") for j in range(params.num_return_sequences)] for i in range(len(prompts))]

    prompts = [SimpleNamespace(messages=({"role": "user", "content": str(i)},), forced_prefix="['", stop=()) for i in range(3)]
    replies = sample_replies(Backend(), prompts, 4, max_new_tokens=8)
    assert calls == [(3, 4, 1.0)] and replies[2] == ["['2-0']", "['2-1']", "['2-2']", "['2-3']"]
    with pytest.raises(Exception, match="at least 2"):
        sample_replies(Backend(), prompts, 1, max_new_tokens=8)


# --- PPO by hand -----------------------------------------------------------------------------------


def test_token_rewards_and_gae_match_a_hand_computation():
    import torch

    from recbench.llm.trainers.ppo import gae, token_rewards

    # one reply of 3 tokens, another of 2 (right-padded)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    logp = torch.tensor([[-1.0, -2.0, -1.0], [-1.0, -1.0, -5.0]])
    ref = torch.tensor([[-1.5, -2.0, -0.5], [-1.0, -2.0, -9.0]])
    rewards = token_rewards(torch.tensor([1.0, 2.0]), logp, ref, mask, kl_coef=0.1)
    # -0.1 * (logp - ref), the score on the last real token
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 0.0, 1.0 + 0.05, 0.0, 2.0 - 0.1, 0.0])
    values = torch.tensor([[0.5, 0.4, 0.3], [1.0, 0.8, 7.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: deltas d2 = 1.05 - 0.3 = 0.75; d1 = 0 + 0.9*0.3 - 0.4 = -0.13; d0 = -0.05 + 0.9*0.4 - 0.5 = -0.19
    a2 = 0.75
    a1 = -0.13 + 0.45 * a2
    a0 = -0.19 + 0.45 * a1
    # row 1: the padded value (7.0) is ignored; d1 = 1.9 - 0.8 = 1.1; d0 = 0 + 0.9*0.8 - 1.0 = -0.28
    b1 = 1.1
    b0 = -0.28 + 0.45 * b1
    assert adv.flatten().tolist() == pytest.approx([a0, a1, a2, b0, b1, 0.0])
    assert ret.flatten().tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3, b0 + 1.0, b1 + 0.8, 0.0])


def test_clipped_ppo_loss_matches_a_hand_computation():
    import torch

    from recbench.llm.trainers.ppo import ppo_loss

    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 2.0]]))  # ratios 1.5, 0.5, 1.1, 2.0 (last one masked out)
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.0, 1.0, 0.0]])
    old_values = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    loss, stats = ppo_loss(new, old, adv, values, old_values, returns, mask, cliprange=0.2, cliprange_value=0.2, vf_coef=0.5)
    # token 0: min(1.5*1, 1.2*1) = 1.2; token 1: min(0.5, 0.8) = 0.5; token 2 (A<0): min(1.1*-2, 1.1*-2) = -2.2
    pg = -(1.2 + 0.5 - 2.2) / 3
    # values clipped to old +- 0.2: token 0 max((0.5-1)^2, (0.2-1)^2) = 0.64; token 1: 1; token 2: max(1, 0.04) = 1
    vf = 0.5 * (0.64 + 1.0 + 1.0) / 3
    assert stats["pg_loss"] == pytest.approx(pg) and stats["vf_loss"] == pytest.approx(vf)
    assert loss.item() == pytest.approx(pg + 0.5 * vf)
    assert stats["clipfrac"] == pytest.approx(2 / 3)  # 1.5 and 0.5 lie outside [0.8, 1.2]


# --- the reward model and PPO on the tiny random model ----------------------------------------------


def _prompt(tokenizer, text):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def test_reward_model_interval_resamples_prompts_not_pairs():
    from recbench.llm.reward_model import prompt_bootstrap

    # 10 pairs of one prompt all right, 10 of another all wrong: accuracy 0.5 from two prompts' evidence
    correct = np.array([1.0] * 10 + [0.0] * 10)
    low, high = prompt_bootstrap(correct, ["a"] * 10 + ["b"] * 10, n_boot=400)
    assert (low, high) == (0.0, 1.0)  # a resample of two prompts is both a, both b, or one of each
    # one pair per prompt: the same as resampling pairs, an interval around 0.5
    low, high = prompt_bootstrap(correct, [str(i) for i in range(20)], n_boot=400)
    assert 0.2 <= low < 0.5 < high <= 0.8
    # prompts weigh by their pairs: 9 right of 9 and 0 of 1 resample to 1.0 (a, a), 0.0 (b, b) or 0.9 (one of
    # each, half the draws), so the middle 40% of resamples is 0.9; a mean of prompt means would give 0.5
    from recbench.metrics import ratio_interval

    assert ratio_interval(np.array([9.0, 0.0]), np.array([9.0, 1.0]), confidence=0.4) == pytest.approx((0.9, 0.9))


@pytest.mark.usefixtures("one_torch_thread")
def test_reward_model_trains_scores_and_serves_as_a_reward_then_ppo_takes_steps(tmp_path, monkeypatch, title_row):
    from transformers import AutoTokenizer

    from recbench.llm.models import resolve_model
    from recbench.llm.reward_model import RewardModelError, pairwise_accuracy, same_tokenizer
    from recbench.llm.training import LOG_FILE, TrainJob, load_model, trained_checkpoint

    monkeypatch.setenv("RECBENCH_HOME", str(tmp_path / "home"))
    base = resolve_model("tiny-random-llama").path
    say = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    pairs = [{"prompt": [{"role": "user", "content": f"user {i}"}], "chosen": say("['Alpha Road']"),
              "rejected": say("zzz"), "score_chosen": 1.0, "score_rejected": 0.0} for i in range(4)]
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    job = TrainJob("reward_model", str(base), str(rows), lr=5e-3, epochs=2, batch_size=2, new_tokens=("<option>",),
                   gradient_checkpointing=False)
    checkpoint = trained_checkpoint(job)
    parent = json.loads((checkpoint.path / "parent.json").read_text())
    assert parent["task_type"] == "SEQ_CLS" and checkpoint.provenance["steps"] == 4
    from safetensors import safe_open

    with safe_open(checkpoint.path / "adapter_model.safetensors", "pt") as saved:
        assert any(".score." in key for key in saved.keys())  # the head is trained and saved beside the adapter
    model, _ = load_model(checkpoint.path, None)
    assert model.config.num_labels == 1 and model.score.weight.shape[0] == 1
    accuracy = pairwise_accuracy(str(checkpoint.path), pairs, n_boot=50)
    assert accuracy["rm_heldout_pairs"] == 4 and accuracy["rm_heldout_prompts"] == 4 and 0 <= accuracy["rm_heldout_accuracy"] <= 1
    low, high = accuracy["rm_heldout_accuracy_ci95"]
    assert low <= accuracy["rm_heldout_accuracy"] <= high
    # the pairs of one prompt share its replies: each conversation is scored once
    from recbench.llm import reward_model

    replies = [say(text) for text in ("['Alpha Road']", "zzz", "['Beta Street']")]
    order = ((0, 1), (0, 2), (2, 1))
    shared = [{"prompt": pairs[0]["prompt"], "chosen": replies[i], "rejected": replies[j]} for i, j in order]
    scored, real = [], reward_model.score_texts
    monkeypatch.setattr(reward_model, "score_texts", lambda folder, texts: scored.append(len(texts)) or real(folder, texts))
    got = reward_model.pairwise_accuracy(str(checkpoint.path), shared, n_boot=50)
    each = real(str(checkpoint.path), [pairs[0]["prompt"] + reply for reply in replies])
    assert scored == [3] and got["rm_heldout_accuracy"] == round(float(np.mean([each[i] > each[j] for i, j in order])), 4)
    monkeypatch.setattr(reward_model, "score_texts", real)

    # the reward by name, on the prompt carried in the answer row
    from recbench.llm.reward_model import register

    register()
    reward = build_reward(RewardSpec("reward_model", args={"checkpoint": str(checkpoint.path)}))
    values = reward(["['Alpha Road']", "zzz"], [{"rm_prompt": pairs[0]["prompt"]}] * 2)
    assert len(values) == 2 and all(math.isfinite(v) for v in values)

    # PPO from the base model against that reward model: a few steps, rewards logged
    tokenizer = AutoTokenizer.from_pretrained(base)
    ppo_rows = [{"prompt": _prompt(tokenizer, f"user {i}") + "['",
                 "answer_row": json.dumps({**title_row, "forced_prefix": "['", "rm_prompt": pairs[i]["prompt"]})}
                for i in range(4)]
    (tmp_path / "ppo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ppo_rows))
    options = {"rewards": ({"name": "reward_model", "weight": 1.0, "args": {"checkpoint": str(checkpoint.path)}},
                           {"name": "metric", "weight": 1.0, "args": {"name": "ndcg@5"}}),
               "prompts_per_step": 2, "max_completion_length": 4, "ppo_epochs": 2}
    ppo = TrainJob("ppo", str(base), str(tmp_path / "ppo.jsonl"), lr=1e-3, options=options, new_tokens=("<option>",),
                   gradient_checkpointing=False)
    import recbench.llm.training as training

    reported = []
    monkeypatch.setattr(training, "own_loop_steps", lambda step, steps: reported.append((step, steps)))
    out = trained_checkpoint(ppo)
    assert reported == [(1, 2), (2, 2)]  # each PPO step reaches the stage's progress bar
    log = json.loads((out.path / LOG_FILE).read_text())
    assert log["steps"] == 2 and all({"reward", "kl", "loss"} <= set(p) for p in log["curve"])
    assert (out.path / "adapter_model.safetensors").is_file()
    policy, _ = load_model(out.path, None)  # the saved adapter loads as a causal LM

    # a corrupt reward model is detected by its recorded sha256; another tokenizer is refused before training
    same_tokenizer(tokenizer, checkpoint.path)
    tokenizer.add_tokens(["<|new_special|>"], special_tokens=True)
    with pytest.raises(RewardModelError, match="another base tokenizer"):
        same_tokenizer(tokenizer, checkpoint.path)
    with (checkpoint.path / "adapter_model.safetensors").open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(RewardModelError, match="corrupt"):
        build_reward(RewardSpec("reward_model", args={"checkpoint": str(checkpoint.path)}))
    with pytest.raises(RewardModelError, match="missing"):
        build_reward(RewardSpec("reward_model", args={"checkpoint": str(tmp_path / "nowhere")}))


# --- the recipes, no task-specific code, on the tiny topk task ------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
def test_rlhf_recipes_run_the_pipeline_on_a_tiny_title_task(monkeypatch):
    from recbench.llm import rewards
    from recbench.manager import load_registry
    from recbench.testing import tiny_task

    # the random model's replies all score 0 by NDCG (no pair): here the pairs rank replies by length instead
    real = rewards.build_reward
    monkeypatch.setattr(rewards, "build_reward", lambda spec: (lambda replies, rows: [float(len(r)) for r in replies])
                        if spec.name == "metric" else real(spec))

    task, data = tiny_task("topk")
    methods = load_registry().methods
    settings = dict(model="tiny-random-llama", train_examples=3, valid_examples=2, lr_grid=(1e-2,), max_history_tokens=24,
                    train_batch_size=2, max_new_tokens=6, cache=False, n_samples=3)
    described = {}
    for name in ("rlhf_dpo", "rlhf_ppo", "rlhf_rloo"):
        cls = methods.get(name)
        extra = {"prompts_per_step": 2, "num_generations": 2, "rm_epochs": 1.0, "rm_batch_size": 2} if name != "rlhf_dpo" else {}
        method = cls(cls.Config(**settings, **extra))
        method.fit(data.fit)
        described[name] = fitted = method.describe()
        assert fitted["trainer"] == name.removeprefix("rlhf_") and fitted["curve"] and "sft_checkpoint" in fitted
        assert fitted["pref_samples"] == 3 * 3 and fitted["pref_candidate_pairs"] == 3 * 3
        assert fitted["pref_pairs_built"] + fitted["pref_pairs_dropped_tied"] + fitted["pref_pairs_dropped_same_text"] == 9
        batch = data.test_inputs.take(np.arange(2))
        assert task.contract().validate(method.predict(batch, task.contract()), batch, data.fit.catalog, name).items.shape[0] == 2
    for name in ("rlhf_ppo", "rlhf_rloo"):
        fitted = described[name]
        assert "rm_heldout_accuracy" in fitted or fitted["rm_heldout_pairs"] == 0
        assert all("reward" in point for point in fitted["curve"])
        # the reward model's score of the SFT start's and the policy's validation replies, paired
        assert fitted["rm_valid_prompts"] == 2
        assert fitted["rm_valid_gain"] == pytest.approx(fitted["rm_valid_score"] - fitted["rm_valid_score_start"], abs=2e-4)
        low, high = fitted["rm_valid_gain_ci95"]
        assert low <= fitted["rm_valid_gain"] <= high
    # one SFT start and one reward model, shared by every stage (content-addressed checkpoints)
    assert len({d["sft_checkpoint"] for d in described.values()}) == 1
    assert described["rlhf_ppo"]["rm_checkpoint"] == described["rlhf_rloo"]["rm_checkpoint"]


def test_rlhf_presets_state_the_papers_settings():
    from recbench.plugins.llm.rlhf import RLHFDPO, RLHFPPO, RLHFRLOO, RLHFSFT

    def resolved(cls, **kw):
        return cls(cls.Config(preset="paper", **kw)).config

    sft, dpo, ppo = resolved(RLHFSFT), resolved(RLHFDPO), resolved(RLHFPPO)
    assert sft.model == dpo.model == ppo.model == "meta-llama/Llama-3.2-1B-Instruct"
    assert (sft.lora_rank, sft.lora_alpha, sft.lr_grid, sft.train_batch_size, sft.epochs) == (256, 128, (5e-5,), 8, 3.0)
    assert (dpo.lora_rank, dpo.lora_alpha, dpo.train_batch_size, dpo.epochs) == (16, 16, 1, 2.0)
    assert (ppo.lora_rank, ppo.lora_alpha, ppo.lora_dropout, ppo.lr_grid, ppo.prompts_per_step) == (8, 32, 0.1, (1e-5,), 16)
    assert (ppo.rm_lr, ppo.rm_batch_size, ppo.rm_epochs) == (5e-5, 1, 1.0)
    assert resolved(RLHFPPO, lora_rank=4).lora_rank == 4  # a set option beats the preset
    # the plan counts RL steps as the trainers do: PPO 4 prompts per step, RLOO 4 // 4 = 1 prompt x 4 replies;
    # smoke: half an epoch over 96 prompts
    smoke_ppo, smoke_rloo = RLHFPPO(RLHFPPO.Config()), RLHFRLOO(RLHFRLOO.Config())
    assert (smoke_ppo.steps(96), smoke_rloo.steps(96)) == (12, 48)
    assert "substitut" in RLHFRLOO.description and "PPO" in RLHFPPO.description
    with pytest.raises(ValueError, match="lora_rank"):
        RLHFSFT.Config(lora_rank=0)
