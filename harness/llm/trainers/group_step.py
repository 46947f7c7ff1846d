"""One GRPO step in this process, for rewards that need live objects (a trained recommender in memory).

TRL's ``GRPOTrainer`` (:mod:`recbench.llm.trainers.grpo`) rebuilds its rewards by name in a
training job; a reward that scores replies with a model held in the caller's memory (CURec's
reason-aware recommender, whose item reason lists change after every step) cannot be rebuilt so.
:class:`GroupStepTrainer` takes such a ``reward_fn`` and does one update per :meth:`step`:

1. sample ``num_generations`` (G) replies per prompt from the current policy (temperature
   ``temperature``, at most ``max_new_tokens``; replies that reach it are counted as truncated);
2. reward each, and standardise the rewards within each prompt's group (equation 4 of the CURec
   paper, DeepSeekMath's GRPO advantage); a group whose rewards are all equal gets advantage 0;
3. one AdamW step on ``-mean(A * sum(log pi(o)) / |o|)``: the per-sequence, token-averaged GRPO
   objective, its gradient accumulated over chunks of ``backward_batch`` replies (the same gradient,
   a fraction of the activations: with SmolLM2-135M and ~630-token sequences, 4 replies per pass
   peaked at 8.9 GB and 1 at 3.0 GB). The replies were just sampled from this very policy, so the
   importance ratio is 1 and the clipped term's gradient is exactly this one; the KL term to a
   reference is not used (beta 0, TRL's default).

Sampling and the replies' log-probabilities are :class:`~recbench.llm.trainers.rlso.RLSOTrainer`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recbench.llm.trainers.rlso import RLSOTrainer


@dataclass(frozen=True)
class GroupStepConfig:
    num_generations: int = 4  # G: replies sampled per prompt
    max_new_tokens: int = 64
    temperature: float = 1.0
    lr: float = 1e-5
    weight_decay: float = 0.0
    backward_batch: int = 4  # replies per forward/backward pass; gradients are summed over the passes

    def __post_init__(self) -> None:
        if self.backward_batch < 1:
            raise ValueError(f"backward_batch must be at least 1, got {self.backward_batch}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be at least 2 (a group needs a baseline), got {self.num_generations}")
        if self.max_new_tokens < 1 or self.lr <= 0:
            raise ValueError("max_new_tokens must be at least 1 and lr positive")


def group_advantages(rewards: np.ndarray, group: int) -> np.ndarray:
    """``(r - mean) / std`` within consecutive groups of ``group`` rewards; 0 where a group has no spread."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, group)
    spread = r.std(axis=1, ddof=1, keepdims=True) if group > 1 else np.zeros((len(r), 1))
    centred = r - r.mean(axis=1, keepdims=True)
    return np.where(spread > 1e-8, centred / np.maximum(spread, 1e-8), 0.0).ravel()


class GroupStepTrainer(RLSOTrainer):
    """See the module docstring. ``reward_fn(replies, rows)`` returns one float per reply."""

    def __init__(self, model: Any, tokenizer: Any, config: GroupStepConfig, reward_fn: Callable, seed: int = 0) -> None:
        super().__init__(model, tokenizer, config, reward_fn=reward_fn, seed=seed)

    def step(self, prompts: Sequence[str], rows: Sequence[Any]) -> dict[str, float]:
        import torch

        g = self.config.num_generations
        enc, replies, mask, texts = self.sample(prompts, n=g)
        raw = np.asarray(self.reward_fn(texts, [r for r in rows for _ in range(g)]), dtype=np.float64)
        advantages = torch.tensor(group_advantages(raw, g), dtype=torch.float32)
        self.model.train()
        self.optimizer.zero_grad()
        per_reply = {k: v.repeat_interleave(g, dim=0) for k, v in enc.items()}  # each reply's prompt
        loss, total, chunk = 0.0, len(replies), self.config.backward_batch
        for start in range(0, total, chunk):
            part = slice(start, start + chunk)
            logp = self.logprobs({k: v[part] for k, v in per_reply.items()}, replies[part], mask[part], n=1)
            part_loss = -(advantages[part] * logp / mask[part].sum(dim=1).clamp(min=1)).sum() / total
            part_loss.backward()
            loss += float(part_loss.detach())
        self.optimizer.step()
        self.model.eval()
        record = {"loss": loss, "reward": float(raw.mean()), "reward_std": float(raw.std()),
                  "frac_reward_zero_std": float((raw.reshape(-1, g).std(axis=1) < 1e-8).mean()),
                  "reply_tokens": float(mask.sum(dim=1).float().mean())}
        self.history.append(record)
        return record
