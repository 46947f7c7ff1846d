"""``rlso``: the LangPTune paper's RLSO, a squared loss on pairs of sampled replies (no TRL trainer has it).

For each prompt (a history) the policy samples two replies p, p' (profiles). Each gets a reward
r (NDCG of the list retrieved with it, from a ``reward_fn``), optionally minus ``gamma`` times its
log-ratio to the initial policy (the paper's Eq. 8, the LoRA adapter switched off as reference),
standardised over the batch (``whiten``, as the paper's code does). Against the log-probabilities
``old`` of the policy that sampled them (the previous policy pi_t), the loss of a pair is

    ((log pi(p) - old(p)) - (log pi(p') - old(p')) - eta * (r(p) - r(p')))^2

averaged over a mini-batch, with ``epochs`` passes over the batch in shuffled mini-batches (the
paper's code: ``num_gens == 2``, ``noptepochs``, whitened rewards, AdamW). Log-probabilities are
sums over the reply's tokens up to and including its end token.

:func:`rlso_loss` and :func:`shaped_rewards` are the arithmetic (tested on hand-computed values);
:class:`RLSOTrainer` is the loop on a (LoRA-wrapped) causal LM, in process. The registry entry
builds it from a :class:`BuildContext` whose config carries the ``reward_fn``; a reward that needs a
live embedder cannot be rebuilt by name in a training subprocess, so recipes call it in process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class RLSOConfig:
    eta: float = 1.0  # the paper's eta (appendix C: 1.0)
    gamma: float = 0.0  # KL penalty weight in the reward, to the initial policy (Gemma 0.2, Llama 0)
    whiten: bool = True  # standardise rewards over the batch
    epochs: int = 4  # passes over each batch of pairs (the paper: 4)
    minibatch: int = 4  # pairs per optimizer step
    max_new_tokens: int = 64  # profile length limit; replies that reach it are truncated and counted
    temperature: float = 1.0
    lr: float = 1e-5
    weight_decay: float = 1e-6
    reward_fn: Callable[[list[str], list[Any]], Sequence[float]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.minibatch < 1 or self.max_new_tokens < 1:
            raise ValueError("epochs, minibatch and max_new_tokens must be at least 1")


def rlso_loss(new_logp: Any, old_logp: Any, rewards: Any, eta: float) -> Any:
    """Mean over pairs of ``((new-old)[:,0] - (new-old)[:,1] - eta * (r[:,0] - r[:,1]))^2``; inputs ``(B, 2)``."""
    ratio = new_logp - old_logp
    diff = (ratio[:, 0] - ratio[:, 1]) - eta * (rewards[:, 0] - rewards[:, 1])
    return (diff**2).mean()


def shaped_rewards(rewards: Any, logp: Any, ref_logp: Any, gamma: float, whiten: bool) -> Any:
    """``r - gamma * (logp - ref_logp)``, then standardised over all entries (unbiased variance) if ``whiten``."""
    import torch

    r = rewards - gamma * (logp - ref_logp)
    if whiten and r.numel() > 1:
        r = (r - r.mean()) * torch.rsqrt(r.var() + 1e-8)
    return r


class RLSOTrainer:
    """RLSO on a causal LM: :meth:`step` samples two replies per prompt, scores them and updates."""

    def __init__(self, model: Any, tokenizer: Any, config: RLSOConfig, reward_fn: Callable | None = None, seed: int = 0) -> None:
        import torch

        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.reward_fn = reward_fn or config.reward_fn
        if self.reward_fn is None:
            raise ValueError("RLSO needs a reward_fn(replies, rows) -> one float per reply")
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.history: list[dict[str, float]] = []
        self.truncated = 0
        self.replies = 0

    def _encode(self, prompts: Sequence[str]) -> Any:
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)

    def sample(self, prompts: Sequence[str], n: int = 2) -> tuple[Any, Any, Any, list[str]]:
        """``n`` sampled replies per prompt: (prompt ids, reply ids, reply mask, texts), prompt-major."""
        import torch

        enc = self._encode(prompts)
        eos = self.tokenizer.eos_token_id
        self.model.eval()
        with torch.no_grad():
            torch.manual_seed(int(self.rng.integers(2**31)))
            out = self.model.generate(**enc, do_sample=True, temperature=self.config.temperature, top_k=0, top_p=1.0,
                                      max_new_tokens=self.config.max_new_tokens, num_return_sequences=n,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos)
        width = enc["input_ids"].shape[1]
        replies = out[:, width:]
        is_end = replies == eos
        ended = is_end.any(dim=1)
        first_end = torch.where(ended, is_end.float().argmax(dim=1), torch.full_like(ended, replies.shape[1], dtype=torch.long))
        mask = torch.arange(replies.shape[1])[None, :] <= first_end[:, None]
        mask &= torch.arange(replies.shape[1])[None, :] < replies.shape[1]
        self.truncated += int((~ended).sum())
        self.replies += len(replies)
        texts = [self.tokenizer.decode(r[m], skip_special_tokens=True).strip() for r, m in zip(replies, mask)]
        return enc, replies, mask, texts

    def logprobs(self, enc: Any, replies: Any, mask: Any, n: int = 2) -> Any:
        """Sum of the reply tokens' log-probabilities, one per reply."""
        import torch

        ids = enc["input_ids"].repeat_interleave(n, dim=0)
        attention = enc["attention_mask"].repeat_interleave(n, dim=0)
        full = torch.cat([ids, replies], dim=1)
        full_attention = torch.cat([attention, mask.long()], dim=1)
        logits = self.model(input_ids=full, attention_mask=full_attention).logits[:, ids.shape[1] - 1: -1]
        logits = logits / (self.config.temperature + 1e-7)
        token_logp = torch.log_softmax(logits.float(), dim=-1).gather(2, replies.unsqueeze(-1)).squeeze(-1)
        return (token_logp * mask).sum(dim=1)

    def step(self, prompts: Sequence[str], rows: Sequence[Any]) -> dict[str, float]:
        """One RLSO batch: sample, reward, then ``epochs`` passes of mini-batch updates."""
        import torch

        c = self.config
        enc, replies, mask, texts = self.sample(prompts)
        raw = torch.tensor(np.asarray(self.reward_fn(texts, [r for r in rows for _ in range(2)]), dtype=np.float32))
        with torch.no_grad():
            old = self.logprobs(enc, replies, mask)
            ref = old
            if c.gamma and hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    ref = self.logprobs(enc, replies, mask)
        rewards = shaped_rewards(raw, old, ref, c.gamma, c.whiten).view(-1, 2)
        old = old.view(-1, 2)
        n_pairs = len(prompts)
        losses = []
        self.model.train()
        for _ in range(c.epochs):
            order = self.rng.permutation(n_pairs)
            for start in range(0, n_pairs, c.minibatch):
                pairs = order[start: start + c.minibatch]
                rows_idx = torch.tensor(np.stack([2 * pairs, 2 * pairs + 1], axis=1).ravel())
                sub = {k: v[torch.as_tensor(pairs)] for k, v in enc.items()}
                new = self.logprobs(sub, replies[rows_idx], mask[rows_idx]).view(-1, 2)
                loss = rlso_loss(new, old[torch.as_tensor(pairs)], rewards[torch.as_tensor(pairs)], c.eta)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()))
        self.model.eval()
        record = {"loss": float(np.mean(losses)), "first_loss": losses[0], "last_loss": losses[-1], "reward": float(raw.mean()),
                  "reply_tokens": float(mask.sum(dim=1).float().mean())}
        self.history.append(record)
        return record

    def train(self, prompts: Sequence[str] | None = None, rows: Sequence[Any] | None = None) -> list[dict[str, float]]:
        """One pass over ``prompts`` in batches of ``minibatch`` prompts (the registry's entry point)."""
        prompts = list(prompts if prompts is not None else self._rows["prompt"])
        rows = list(rows if rows is not None else self._rows["answer_row"])
        for start in range(0, len(prompts), self.config.minibatch):
            self.step(prompts[start: start + self.config.minibatch], rows[start: start + self.config.minibatch])
        return self.history


def build_rlso(ctx: BuildContext) -> RLSOTrainer:
    trainer = RLSOTrainer(ctx.model, ctx.tokenizer, ctx.config, seed=int(ctx.args.get("seed", 0)))
    trainer._rows = {"prompt": list(ctx.dataset["prompt"]), "answer_row": list(ctx.dataset["answer_row"])}
    return trainer


register_trainer(TrainerSpec("rlso", RLSOConfig, build_rlso, ("prompt", "answer_row"),
                             description="RLSO (LangPTune): squared loss on paired log-ratio and reward differences"))
