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


def test_reply_logprobs_equal_the_full_sequence_log_softmax():
    """The trainer asks the model only for the logits that predict reply tokens (memory); the sums
    must equal those read off the full (batch, prompt + reply, vocabulary) logits, left-padded prompts included."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbench.llm.models import resolve_model
    from recbench.llm.trainers.rlso import RLSOConfig, RLSOTrainer

    folder = resolve_model("tiny-random-llama").path
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    trainer = RLSOTrainer(model, tok, RLSOConfig(max_new_tokens=5, temperature=0.7), reward_fn=lambda t, r: [0.0] * len(t))
    enc, replies, mask, _ = trainer.sample(["a much longer first prompt here", "hi"], n=2)
    with torch.no_grad():
        got = trainer.logprobs(enc, replies, mask, n=2)
        ids = enc["input_ids"].repeat_interleave(2, dim=0)
        attention = torch.cat([enc["attention_mask"].repeat_interleave(2, dim=0), mask.long()], dim=1)
        logits = model(input_ids=torch.cat([ids, replies], dim=1), attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, ids.shape[1] - 1: -1] / 0.7, dim=-1)
        expected = (logp.gather(2, replies[..., None])[..., 0] * mask).sum(dim=1)
    assert enc["attention_mask"][1, 0] == 0  # the short prompt is left-padded
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


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


def _tiny_lora_policy(seed=0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbench.llm.models import resolve_model

    folder = resolve_model("tiny-random-llama").path
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    lora = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), AutoTokenizer.from_pretrained(folder)


def test_rlso_under_a_one_process_accelerator_matches_the_in_process_loop():
    """The accelerate path (prepare, accelerator.backward, gathered whitening) changes no number on one CPU process."""
    import torch
    from accelerate import Accelerator

    from recbench.llm.trainers.rlso import RLSOConfig, RLSOTrainer

    config = RLSOConfig(eta=1.0, gamma=0.2, whiten=True, epochs=2, minibatch=2, max_new_tokens=6, lr=1e-2)

    def reward(replies, rows):
        return [len(r) / 10.0 + (row == "b") for r, row in zip(replies, rows)]

    runs = []
    for accelerator in (None, Accelerator(cpu=True)):
        model, tok = _tiny_lora_policy()
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        trainer = RLSOTrainer(model, tok, config, reward_fn=reward, seed=3, accelerator=accelerator)
        records = [trainer.step(["hello", "world!", "abc"], ["a", "b", "c"]) for _ in range(2)]
        update = {n: p.detach() - before[n] for n, p in model.named_parameters() if p.requires_grad}
        runs.append((records, update))
    (local, local_update), (accelerated, accelerated_update) = runs
    assert accelerated == local  # every loss, reward and length of both batches
    assert local[0]["first_loss"] > 0 and any(float(d.abs().max()) > 0 for d in local_update.values())  # it did learn
    for name, delta in local_update.items():
        torch.testing.assert_close(accelerated_update[name], delta, rtol=0, atol=0)


def test_langptune_rlso_trains_under_accelerate_launch_with_two_cpu_processes(tiny_st):
    """processes=2: the RLSO batches run as one `rlso` training job under accelerate launch, the reward rebuilt
    by name in each process; the profile writer then answers from the trained checkpoint."""
    import json

    from recbench.llm.training import LOG_FILE, checkpoints_dir
    from recbench.plugins.llm.langptune import LangPTuneRLSO
    from recbench.testing import tiny_task

    task, data = tiny_task("session", {"max_test_examples": 4})
    config = LangPTuneRLSO.Config(embedder=tiny_st, model="tiny-random-llama", profile_tokens=6, train_sessions=6,
                                  iterations=1, rlso_batches=2, rlso_batch_size=2, rlso_epochs=1, lora_rank=2,
                                  lora_alpha=4, max_seq_length=64, gen_batch_size=4, processes=2)
    method = LangPTuneRLSO(config)
    method.fit(data.fit)
    out = method.predict(data.test_inputs, task.contract())
    assert out.items.shape == (4, 20) and all(isinstance(e["profile"], str) for e in out.extras)
    fitted = method.describe()
    assert fitted["rlso_job"]["processes"] == 2 and not fitted["rlso_job"]["reused"]
    assert [r["iteration"] for r in fitted["rlso_curve"]] == [0, 0]  # K x T = 2 batches, each over both processes
    assert all(0.0 <= r["reward"] <= 1.0 for r in fitted["rlso_curve"])
    (folder,) = [p for p in checkpoints_dir().iterdir() if p.name.startswith("rlso-")]
    log = json.loads((folder / LOG_FILE).read_text())
    assert (log["world_size"], log["steps"], log["rows"]) == (2, 2, 6), log
    assert 0 <= fitted["rlso_replies_truncated"] <= 2 * 2 * 2 * 2  # batches x processes x histories x replies
    with pytest.raises(ValueError, match="processes must be at least 1"):
        LangPTuneRLSO.Config(processes=0)
