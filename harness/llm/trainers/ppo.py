"""``ppo``: Proximal Policy Optimization as the RLHF top-k paper states it (section 3.5), written here.

TRL 1.16 has no PPO (removed with its value-head models), so this is a small one of our own:

- rollouts: each step samples one reply per prompt for ``prompts_per_step`` prompts (per process);
  the reply is scored by the rewards of :mod:`recbench.llm.rewards` (e.g. ``reward_model``);
- per-token rewards: ``-kl_coef * (log pi(a_t) - log pi_ref(a_t))`` on every reply token, plus the
  score on the last one; the reference policy is the parent (the LoRA adapter switched off);
- a value head (a linear layer on the policy's last hidden state) gives V(s_t); advantages by GAE
  (:func:`gae`, ``gamma``, ``lam``), whitened over the batch's tokens;
- the clipped ratio objective ``min(r A, clip(r, 1-eps, 1+eps) A)`` plus a clipped value loss
  (:func:`ppo_loss`), ``ppo_epochs`` passes over each batch.

The trainer offers what :func:`recbench.llm.training.run_job` uses of a TRL trainer
(``train_dataset``, ``train()``, ``state.log_history``, ``accelerator``), so it runs in this
process or under ``accelerate launch`` like every other algorithm. The value head is not saved:
only the policy's adapter answers at evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class PPOArgs:
    rewards: tuple[dict[str, Any], ...] = ({"name": "metric", "weight": 1.0, "args": {}},)  # RewardSpec.to_dict() each
    prompts_per_step: int = 4  # rollouts per PPO batch and process (the paper's batch 16)
    max_completion_length: int = 16
    temperature: float = 1.0
    kl_coef: float = 0.05  # weight of the per-token KL penalty to the reference policy
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2  # epsilon of the clipped ratio
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    ppo_epochs: int = 2  # optimisation passes over each batch of rollouts
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        if self.prompts_per_step < 1 or self.ppo_epochs < 1 or self.max_completion_length < 1:
            raise ValueError("prompts_per_step, ppo_epochs and max_completion_length must be at least 1")
        if not 0 < self.cliprange < 1 or self.kl_coef < 0 or not 0 <= self.lam <= 1 or not 0 <= self.gamma <= 1:
            raise ValueError(f"need 0 < cliprange < 1, kl_coef >= 0, 0 <= lam, gamma <= 1; got {self}")
        if not self.rewards:
            raise ValueError("rewards: name at least one reward")


# --- the algorithm, as pure functions (tested by hand) --------------------------------------------


def token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef: float):
    """Per-token rewards: the KL penalty on each reply token, the sequence's score added on its last token."""
    import torch

    rewards = -kl_coef * (logprobs - ref_logprobs) * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalized Advantage Estimation over right-padded replies: (advantages, returns), zero where ``mask`` is 0."""
    import torch

    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x, mask):
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * (var + 1e-8).rsqrt() * mask


def ppo_loss(logprobs, old_logprobs, advantages, values, old_values, returns, mask, *, cliprange: float,
             cliprange_value: float, vf_coef: float):
    """The clipped surrogate (negated, to minimise) plus ``vf_coef`` times the clipped value loss; and stats."""
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cliprange, 1 + cliprange))
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    vf = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2)
    pg_loss, vf_loss = masked_mean(pg, mask), masked_mean(vf, mask)
    clipfrac = masked_mean(((ratio - 1).abs() > cliprange).float(), mask)
    return pg_loss + vf_coef * vf_loss, {"pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(), "clipfrac": clipfrac.item()}


# --- the trainer -----------------------------------------------------------------------------------


class PPOTrainer:
    def __init__(self, model: Any, tokenizer: Any, dataset: Any, args: dict[str, Any], config: PPOArgs) -> None:
        import torch
        from accelerate import Accelerator

        from recbench.llm.trainers.grpo import trl_reward

        self.config, self.tokenizer, self.train_dataset = config, tokenizer, dataset
        self.lr, self.epochs, self.seed = args["learning_rate"], args["num_train_epochs"], args["seed"]
        self.quiet = args.get("disable_tqdm", True)
        self.accelerator = Accelerator(cpu=args.get("use_cpu", False))
        self.rewards = [trl_reward(r) for r in config.rewards]
        self.weights = [float(r.get("weight", 1.0)) for r in config.rewards]
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        torch.manual_seed(self.seed)
        hidden = model.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden, 1).to(model.device, next(model.parameters()).dtype)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        params = [p for p in model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        self.model, self.value_head, self.optimizer = self.accelerator.prepare(model, self.value_head, optimizer)
        self.state = SimpleNamespace(log_history=[])
        self.step_callbacks: list[Any] = []  # each called with (step, steps) after a step (stage progress)

    def _forward(self, model, input_ids, attention_mask, start: int, with_values: bool = True):
        """Log-probabilities of the reply tokens (positions ``start:``) and the values of the states before them."""
        import torch

        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=with_values, use_cache=False)
        logits = out.logits[:, start - 1: -1].float() / self.config.temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, start:, None])[..., 0]
        values = self.value_head(out.hidden_states[-1][:, start - 1: -1]).squeeze(-1).float() if with_values else None
        return logprobs, values

    def _rollout(self, rows: list[dict[str, Any]]):
        import torch

        c, tok = self.config, self.tokenizer
        policy = self.accelerator.unwrap_model(self.model)
        enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
        with torch.no_grad():
            sequences = policy.generate(**enc, do_sample=True, temperature=c.temperature, top_k=0, top_p=1.0,
                                        max_new_tokens=c.max_completion_length, pad_token_id=tok.pad_token_id)
        start = enc.input_ids.shape[1]
        reply = sequences[:, start:]
        is_eos = reply == tok.eos_token_id
        after_eos = (is_eos.int().cumsum(dim=1) - is_eos.int()) > 0  # tokens after the first eos
        mask = (~after_eos).float()
        attention = torch.cat([enc.attention_mask, mask.long()], dim=1)
        texts = tok.batch_decode(reply.masked_fill(after_eos | is_eos, tok.pad_token_id), skip_special_tokens=True)
        scores = torch.zeros(len(rows))
        for weight, function in zip(self.weights, self.rewards):
            scores += weight * torch.tensor(function([r["prompt"] for r in rows], texts, [r["answer_row"] for r in rows]),
                                            dtype=torch.float32)
        with torch.no_grad():
            old_logprobs, old_values = self._forward(self.model, sequences, attention, start)
            with policy.disable_adapter():
                ref_logprobs, _ = self._forward(policy, sequences, attention, start, with_values=False)
        return SimpleNamespace(sequences=sequences, attention=attention, start=start, mask=mask.to(old_logprobs.device),
                               scores=scores.to(old_logprobs.device), old_logprobs=old_logprobs,
                               ref_logprobs=ref_logprobs, old_values=old_values)

    def step(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        import torch

        c = self.config
        r = self._rollout(rows)
        rewards = token_rewards(r.scores, r.old_logprobs, r.ref_logprobs, r.mask, c.kl_coef)
        advantages, returns = gae(rewards, r.old_values, r.mask, c.gamma, c.lam)
        if c.whiten_advantages:
            advantages = whiten(advantages, r.mask)
        self.model.train()
        losses, stats = [], {}
        for _ in range(c.ppo_epochs):
            logprobs, values = self._forward(self.model, r.sequences, r.attention, r.start)
            loss, stats = ppo_loss(logprobs, r.old_logprobs, advantages, values, r.old_values, returns, r.mask,
                                   cliprange=c.cliprange, cliprange_value=c.cliprange_value, vf_coef=c.vf_coef)
            self.optimizer.zero_grad()
            self.accelerator.backward(loss)
            self.accelerator.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
            self.optimizer.step()
            losses.append(loss.item())
        kl = ((r.old_logprobs - r.ref_logprobs) * r.mask).sum(dim=1)
        gathered = self.accelerator.gather(torch.stack([r.scores.mean(), r.scores.std() if len(rows) > 1 else r.scores.sum() * 0,
                                                        kl.mean(), r.mask.sum(dim=1).mean()])).view(-1, 4).mean(dim=0)
        return {"loss": sum(losses) / len(losses), "reward": gathered[0].item(), "reward_std": gathered[1].item(),
                "kl": gathered[2].item(), "completion_length": gathered[3].item(), **stats}

    def train(self):
        import numpy as np

        c, acc = self.config, self.accelerator
        per_step = c.prompts_per_step * acc.num_processes
        steps = max(1, math.ceil(len(self.train_dataset) * self.epochs / per_step))
        rng = np.random.default_rng(self.seed)
        order: list[int] = []
        losses = []
        for step in range(1, steps + 1):
            while len(order) < per_step:
                order.extend(rng.permutation(len(self.train_dataset)).tolist())
            batch, order = order[:per_step], order[per_step:]
            mine = batch[acc.process_index * c.prompts_per_step:(acc.process_index + 1) * c.prompts_per_step]
            logged = self.step([self.train_dataset[i] for i in mine])
            losses.append(logged["loss"])
            self.state.log_history.append({"step": step, **{k: round(v, 6) for k, v in logged.items()}})
            for callback in self.step_callbacks:
                callback(step, steps)
            if not self.quiet and acc.is_main_process:
                print(f"ppo step {step}/{steps}: reward {logged['reward']:.4f} kl {logged['kl']:.4f} loss {logged['loss']:.4f}")
        return SimpleNamespace(training_loss=sum(losses) / len(losses), global_step=steps)


def check_reward_tokenizers(tokenizer: Any, rewards: tuple[dict[str, Any], ...]) -> None:
    """A reward model read by another tokenizer than the policy's is an error before any training."""
    from recbench.llm.reward_model import same_tokenizer

    for reward in rewards:
        if reward["name"] == "reward_model" and reward.get("args", {}).get("checkpoint"):
            same_tokenizer(tokenizer, reward["args"]["checkpoint"])


def build(ctx: BuildContext) -> PPOTrainer:
    from recbench.llm.reward_model import register

    register()
    check_reward_tokenizers(ctx.tokenizer, ctx.config.rewards)
    return PPOTrainer(ctx.model, ctx.tokenizer, ctx.dataset, ctx.args, ctx.config)


register_trainer(TrainerSpec("ppo", PPOArgs, build, ("prompt", "answer_row"),
                             description="PPO written in recbench (clipped ratio, GAE from a value head, KL to the reference)"))
