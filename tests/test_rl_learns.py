"""On-policy RL moves the policy where its reward points, prompt by prompt: a learning check that can fail.

A tiny random model (2 layers, byte tokenizer) samples six-character replies to two prompts. The
reward asks for opposite things on the two (ASCII characters after one, non-ASCII after the other),
so a policy that ignores its prompt earns 0.5 in expectation whatever it learns: the reward rises
above that only if each reply is scored against its own prompt's answer row and the update follows
the sign of the advantage. A misaligned reward (rows shuffled against completions), a flipped sign
or an update that never reaches the adapter keeps the curve near 0.5.

The stock tiny model cannot learn this: its tied embeddings have std 0.02, so after the final norm
its logits stay within a few tenths of uniform and LoRA (which TRL's GRPO never puts on
``lm_head``) cannot sharpen them; measured, 60 steps at learning rates 0.1 and 0.3 gave the same flat
curve. Its embeddings are scaled by 4 here, which leaves the replies random at the start (mean
reward 0.53) but lets the adapters move them (0.64 after 96 steps at learning rate 0.01).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from recbench.llm.models import resolve_model
from recbench.llm.rewards import REWARDS
from recbench.llm.training import LOG_FILE, TrainJob, run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = {"low": "Lowercase letters please: " * 2, "high": "@@@@ #### !!!! ~~~~ " * 2}
STEPS = 96


def half_reward():
    """Share of a reply's characters in the half its row asks for (``low``: ASCII; ``high``: the rest)."""

    def reward(replies, rows):
        out = []
        for text, row in zip(replies, rows):
            ascii_share = sum(ord(ch) < 128 for ch in text) / len(text) if text else 0.5
            out.append(ascii_share if row["want"] == "low" else 1.0 - ascii_share)
        return out

    return reward


@pytest.fixture(scope="module")
def expressive_tiny(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_model("tiny-random-llama").path
    folder = tmp_path_factory.mktemp("tiny-x4")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # tied: the input embeddings scale with it
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_rl_raises_a_reward_that_depends_on_the_prompt(algorithm, expressive_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(REWARDS, "test_half", half_reward)
    rows = [{"prompt": PROMPTS[want], "answer_row": json.dumps({"want": want})} for _ in range(STEPS) for want in PROMPTS]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = {"rewards": ({"name": "test_half", "weight": 1.0, "args": {}},), "num_generations": 8,
               "prompts_per_step": 2, "max_completion_length": 6, "temperature": 1.0, "beta": 0.0}
    job = TrainJob(algorithm, str(expressive_tiny), str(path), lr=1e-2, batch_size=16, max_length=128,
                   lora_dropout=0.0, options=options, gradient_checkpointing=False)
    run_job(job, tmp_path / "out")
    curve = [point["reward"] for point in json.loads((tmp_path / "out" / LOG_FILE).read_text())["curve"]]
    assert len(curve) == STEPS, curve  # one step per 2 prompts x 8 replies
    first, last = np.mean(curve[:24]), np.mean(curve[-24:])
    assert last >= 0.58 and last >= first + 0.04, (first, last, curve)


def test_backward_batch_splits_a_step_into_passes_and_keeps_one_update_per_group(expressive_tiny, tmp_path, monkeypatch):
    """``backward_batch=4`` of 2 prompts x 8 replies: 4 forward/backward passes of 4 completions, one optimizer step."""
    from recbench.llm.trainers import BuildContext
    from recbench.llm.trainers.grpo import GRPOArgs, _common

    args = GRPOArgs(num_generations=8, prompts_per_step=2, backward_batch=4)
    trl = _common(BuildContext(None, None, None, {"gradient_accumulation_steps": 1, "per_device_train_batch_size": 1}, args))
    assert (trl["per_device_train_batch_size"], trl["gradient_accumulation_steps"], trl["steps_per_generation"]) == (4, 4, 4)
    with pytest.raises(ValueError, match="backward_batch must divide"):
        GRPOArgs(num_generations=8, prompts_per_step=2, backward_batch=3)
    monkeypatch.setitem(REWARDS, "test_half", half_reward)
    rows = [{"prompt": PROMPTS[want], "answer_row": json.dumps({"want": want})} for _ in range(3) for want in PROMPTS]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = {"rewards": ({"name": "test_half", "weight": 1.0, "args": {}},), "num_generations": 8,
               "prompts_per_step": 2, "max_completion_length": 6, "backward_batch": 4}
    job = TrainJob("grpo", str(expressive_tiny), str(path), lr=1e-2, batch_size=16, max_length=128, lora_dropout=0.0,
                   options=options, gradient_checkpointing=False)
    run_job(job, tmp_path / "out")
    assert len(json.loads((tmp_path / "out" / LOG_FILE).read_text())["curve"]) == 3  # one update per 2 prompts


def test_the_plan_counts_one_rl_step_per_group_of_prompts():
    from recbench.plugins.llm.grpo import GRPO, RLOO

    method = GRPO(GRPO.Config(preset="cpu", train_examples=96, prompts_per_step=2))
    assert method.steps(96) == 48 and RLOO(RLOO.Config(preset="cpu", prompts_per_step=4)).steps(64) == 16


def test_a_reward_that_asks_a_backend_does_not_count_as_training_steps(monkeypatch):
    """An oracle's backend advances the open stage per prompt; inside a reward those are not optimizer steps."""
    from recbench import progress
    from recbench.llm.trainers.grpo import trl_reward

    def chatty():
        return lambda replies, rows: [progress.advance(4) or 0.5 for _ in replies]

    monkeypatch.setitem(REWARDS, "test_chatty", chatty)
    reward = trl_reward({"name": "test_chatty", "weight": 1.0, "args": {}})
    with progress.stage("training", 8, "step") as training:
        assert reward(["p", "p"], ["a", "b"], [json.dumps({})] * 2) == [0.5, 0.5]
        assert training.done == 0
        progress.advance()  # the trainer's own step still counts
        assert training.done == 1
