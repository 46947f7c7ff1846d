"""RLSO (the LangPTune paper's loss) on hand-computed values and a tiny random model; the langptune
methods on the tiny session task."""

from __future__ import annotations

import numpy as np
import pytest

from test_session_embed import tiny_st  # noqa: F401  (the tiny sentence-transformers fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rlso_loss_matches_hand_computed_values():
    import torch

    from recbench.llm.trainers.rlso import rlso_loss

    new = torch.tensor([[0.5, 0.1], [0.0, 0.2]])
    old = torch.tensor([[0.3, 0.3], [0.1, 0.1]])
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pair 1: (0.2 - -0.2) - 1*(1 - 0) = -0.6; pair 2: (-0.1 - 0.1) - 1*(0 - 1) = 0.8; mean of squares 0.5
    assert float(rlso_loss(new, old, rewards, eta=1.0)) == pytest.approx(0.5)
    # eta 2: -1.6 and 1.8 -> (2.56 + 3.24) / 2
    assert float(rlso_loss(new, old, rewards, eta=2.0)) == pytest.approx(2.9)
    # at new == old the loss is the squared scaled reward gap alone
    assert float(rlso_loss(old, old, rewards, eta=0.5)) == pytest.approx(0.25)


def test_rewards_get_the_kl_penalty_then_are_whitened():
    import torch

    from recbench.llm.trainers.rlso import shaped_rewards

    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    logp, ref = torch.tensor([-1.0, -2.0, -3.0, -4.0]), torch.tensor([-1.5, -2.0, -3.0, -3.0])
    np.testing.assert_allclose(shaped_rewards(r, logp, ref, 0.5, whiten=False).numpy(), [0.75, 0.0, 0.0, 1.5])
    dev = np.array([0.1875, -0.5625, -0.5625, 0.9375])  # about the mean 0.5625
    expected = dev / np.sqrt(np.sum(dev**2) / 3 + 1e-8)
    np.testing.assert_allclose(shaped_rewards(r, logp, ref, 0.5, whiten=True).numpy(), expected, rtol=1e-5)


def test_rlso_trainer_steps_a_tiny_model_and_first_loss_is_the_reward_gap():
    import torch

    from recbench.llm.models import resolve_model
    from recbench.llm.trainers import get_trainer
    from recbench.llm.trainers.rlso import RLSOConfig, RLSOTrainer

    assert get_trainer("rlso").row_keys == ("prompt", "answer_row")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model("tiny-random-llama").path
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rewards_seen = []

    def reward(replies, rows):  # longer replies are better; rows are repeated per reply
        assert rows == ["a", "a", "b", "b"]
        out = [len(r) / 10.0 for r in replies]
        rewards_seen.append(out)
        return out

    config = RLSOConfig(eta=1.0, gamma=0.0, whiten=False, epochs=2, minibatch=2, max_new_tokens=6, lr=1e-3)
    trainer = RLSOTrainer(model, tok, config, reward_fn=reward, seed=0)
    record = trainer.step(["hello", "world!"], ["a", "b"])
    r = np.array(rewards_seen[0]).reshape(2, 2)
    assert record["first_loss"] == pytest.approx(np.mean((r[:, 0] - r[:, 1]) ** 2), rel=1e-4, abs=1e-7)
    assert record["reward"] == pytest.approx(r.mean(), rel=1e-5)
    assert trainer.replies == 4 and 0 <= trainer.truncated <= 4


@pytest.mark.parametrize("name", ["langptune0", "langptune"])
def test_langptune_methods_answer_the_session_task_with_profiles(name, tiny_st):
    from recbench.manager import load_registry
    from recbench.testing import run_method, tiny_task

    method = load_registry().methods.get(name)
    task, data = tiny_task("session", {"max_test_examples": 6})
    config = method.Config(embedder=tiny_st, model="tiny-random-llama", profile_tokens=8, train_sessions=6, steps=1,
                           batch_size=4, rlso_batches=1, rlso_batch_size=2, rlso_epochs=1, lora_rank=2, lora_alpha=4,
                           max_seq_length=64, gen_batch_size=6)
    out = run_method(method, config, 0, task, data, batch_size=64)
    assert out.items.shape == (6, 20)
    assert all(isinstance(e["profile"], str) for e in out.extras)


def test_profiles_that_reach_the_length_limit_are_truncated_and_counted(tiny_st):
    from recbench.plugins.llm.langptune import LangPTune0
    from recbench.testing import tiny_task

    task, data = tiny_task("session", {"max_test_examples": 4})
    method = LangPTune0(LangPTune0.Config(embedder=tiny_st, model="tiny-random-llama", profile_tokens=3, max_seq_length=64))
    method.fit(data.fit)
    prompts = method.prompts_for([data.test_inputs.histories.items_of(i) for i in range(4)], [None] * 4)
    assert method.texts[int(data.test_inputs.histories.items_of(0)[0])] in prompts[0]  # the history's item texts are shown
    profiles = method.write_profiles(prompts)
    assert len(profiles) == 4
    assert method.counts["profiles"] == 4
    # a random model rarely emits its end token within 3 tokens: each such profile is counted
    assert method.counts["profiles_truncated"] >= 3
    assert method.describe()["profile_counts"]["profiles_truncated"] == method.counts["profiles_truncated"]
