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
:class:`RLSOTrainer` is the loop on a (LoRA-wrapped) causal LM. Without an ``accelerator`` it runs
in this process on the model where it is (LangPTune's alternation calls :meth:`RLSOTrainer.step`
between its InfoNCE rounds; CURec's :class:`~recbench.llm.trainers.group_step.GroupStepTrainer`
reuses its sampling). With an ``accelerate.Accelerator`` the model and optimizer are prepared by
it (device placement; DistributedDataParallel over several processes), the loss goes through
``accelerator.backward``, the whitening statistics and the logged numbers are gathered over the
processes, and each process samples its own replies (its own seed).

The registry entry builds it that way from a :class:`BuildContext`, so the ``rlso`` algorithm runs as
a :class:`~recbench.llm.training.TrainJob` in this process or under ``accelerate launch`` like every
TRL algorithm (:func:`recbench.llm.training.run_job` saves the adapter from the main process). There
the rewards are :class:`~recbench.llm.rewards.RewardSpec` dicts (``rewards``), rebuilt by name in
each process, and the job's learning rate is the trainer's. Each of ``batches`` steps gives every
process ``prompts_per_step`` prompts (two replies each), taken in row order and cycling; the step's
rows are the same as the in-process loop's when there is one process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
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
    lr: float = 1e-5  # in a training job, the job's lr replaces it
    weight_decay: float = 1e-6
    reward_fn: Callable[[list[str], list[Any]], Sequence[float]] | None = field(default=None, compare=False)
    rewards: tuple[dict[str, Any], ...] = ()  # RewardSpec.to_dict() each: the rewards of a training job (summed, weighted)
    batches: int = 0  # RLSO batches of a training job; 0: ceil(rows x job epochs / (prompts_per_step x processes))
    prompts_per_step: int = 0  # prompts per batch and process in a training job (two replies each); 0: minibatch

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.minibatch < 1 or self.max_new_tokens < 1:
            raise ValueError("epochs, minibatch and max_new_tokens must be at least 1")
        if self.batches < 0 or self.prompts_per_step < 0:
            raise ValueError("batches and prompts_per_step must be 0 (derived) or more")


def rlso_loss(new_logp: Any, old_logp: Any, rewards: Any, eta: float) -> Any:
    """Mean over pairs of ``((new-old)[:,0] - (new-old)[:,1] - eta * (r[:,0] - r[:,1]))^2``; inputs ``(B, 2)``."""
    ratio = new_logp - old_logp
    diff = (ratio[:, 0] - ratio[:, 1]) - eta * (rewards[:, 0] - rewards[:, 1])
    return (diff**2).mean()


def shaped_rewards(rewards: Any, logp: Any, ref_logp: Any, gamma: float, whiten: bool, gather: Callable | None = None) -> Any:
    """``r - gamma * (logp - ref_logp)``, then standardised over all entries (unbiased variance) if ``whiten``;
    ``gather`` (an accelerator's) takes the statistics over every process's entries."""
    import torch

    r = rewards - gamma * (logp - ref_logp)
    pool = r if gather is None else gather(r)
    if whiten and pool.numel() > 1:
        r = (r - pool.mean()) * torch.rsqrt(pool.var() + 1e-8)
    return r


class LocalProcess:
    """What :class:`RLSOTrainer` asks of an ``accelerate.Accelerator``, for the in-process loop: one
    process, the model left where it is, a plain ``backward``."""

    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self, device: Any) -> None:
        self.device = device

    def prepare(self, *objects: Any) -> tuple[Any, ...]:
        return objects

    def backward(self, loss: Any) -> None:
        loss.backward()

    def gather(self, tensor: Any) -> Any:
        return tensor

    def unwrap_model(self, model: Any) -> Any:
        return model

    def wait_for_everyone(self) -> None:
        pass


class RLSOTrainer:
    """RLSO on a causal LM: :meth:`step` samples two replies per prompt, scores them and updates;
    :meth:`train` runs a training job's batches (``train_dataset`` rows ``prompt`` and ``answer_row``)."""

    def __init__(self, model: Any, tokenizer: Any, config: RLSOConfig, reward_fn: Callable | None = None, seed: int = 0,
                 *, accelerator: Any = None, train_dataset: Any = None, data_epochs: float = 1.0) -> None:
        import torch

        self.tokenizer, self.config = tokenizer, config
        self.reward_fn = reward_fn or config.reward_fn
        if self.reward_fn is None:
            raise ValueError("RLSO needs a reward_fn(replies, rows) -> one float per reply (or rewards=[RewardSpec dicts])")
        self.accelerator = accelerator or LocalProcess(next(model.parameters()).device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.policy = self.accelerator.unwrap_model(self.model)  # generation and the adapter switch, outside DDP
        self.rng = np.random.default_rng(seed)
        self.train_dataset, self.data_epochs = train_dataset, data_epochs
        self.state = SimpleNamespace(log_history=[])  # what run_job reads of a transformers Trainer
        self.step_callbacks: list[Any] = []  # each called with (step, steps) after a training-job step (stage progress)
        self.history: list[dict[str, float]] = []
        self.truncated = 0
        self.replies = 0

    def _encode(self, prompts: Sequence[str]) -> Any:
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        return enc.to(self.accelerator.device)

    def sample(self, prompts: Sequence[str], n: int = 2) -> tuple[Any, Any, Any, list[str]]:
        """``n`` sampled replies per prompt: (prompt ids, reply ids, reply mask, texts), prompt-major."""
        import torch

        enc = self._encode(prompts)
        eos = self.tokenizer.eos_token_id
        self.model.eval()
        with torch.no_grad():
            torch.manual_seed(int(self.rng.integers(2**31)))
            out = self.policy.generate(**enc, do_sample=True, temperature=self.config.temperature, top_k=0, top_p=1.0,
                                       max_new_tokens=self.config.max_new_tokens, num_return_sequences=n,
                                       pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos)
        width = enc["input_ids"].shape[1]
        replies = out[:, width:]
        is_end = replies == eos
        ended = is_end.any(dim=1)
        first_end = torch.where(ended, is_end.float().argmax(dim=1), torch.full_like(ended, replies.shape[1], dtype=torch.long))
        positions = torch.arange(replies.shape[1], device=replies.device)[None, :]
        mask = (positions <= first_end[:, None]) & (positions < replies.shape[1])
        self.truncated += int((~ended).sum())
        self.replies += len(replies)
        texts = [self.tokenizer.decode(r[m], skip_special_tokens=True).strip() for r, m in zip(replies, mask)]
        return enc, replies, mask, texts

    def logprobs(self, enc: Any, replies: Any, mask: Any, n: int = 2, model: Any = None) -> Any:
        """Sum of the reply tokens' log-probabilities, one per reply (under ``model``, default the trained one)."""
        import torch

        model = self.model if model is None else model
        ids = enc["input_ids"].repeat_interleave(n, dim=0)
        attention = enc["attention_mask"].repeat_interleave(n, dim=0)
        full = torch.cat([ids, replies], dim=1)
        full_attention = torch.cat([attention, mask.long()], dim=1)
        # only the logits that predict reply tokens: with long prompts the full (batch, prompt + reply,
        # vocabulary) tensor and its log-softmax are gigabytes (600-token prompts x 49k-150k vocabularies)
        keep = replies.shape[1] + 1
        logits = model(input_ids=full, attention_mask=full_attention, logits_to_keep=keep).logits[:, :-1]
        logits = logits / (self.config.temperature + 1e-7)
        token_logp = torch.log_softmax(logits.float(), dim=-1).gather(2, replies.unsqueeze(-1)).squeeze(-1)
        return (token_logp * mask).sum(dim=1)

    def step(self, prompts: Sequence[str], rows: Sequence[Any]) -> dict[str, float]:
        """One RLSO batch: sample, reward, then ``epochs`` passes of mini-batch updates. Under several
        processes each passes its own prompts (as many in each) and the record is over all of them."""
        import torch

        c, acc = self.config, self.accelerator
        enc, replies, mask, texts = self.sample(prompts)
        raw = torch.tensor(np.asarray(self.reward_fn(texts, [r for r in rows for _ in range(2)]), dtype=np.float32),
                           device=replies.device)
        with torch.no_grad():
            old = self.logprobs(enc, replies, mask, model=self.policy)
            ref = old
            if c.gamma and hasattr(self.policy, "disable_adapter"):
                with self.policy.disable_adapter():
                    ref = self.logprobs(enc, replies, mask, model=self.policy)
        rewards = shaped_rewards(raw, old, ref, c.gamma, c.whiten, gather=acc.gather).view(-1, 2)
        old = old.view(-1, 2)
        n_pairs = len(prompts)
        losses = []
        self.model.train()
        for _ in range(c.epochs):
            order = self.rng.permutation(n_pairs)
            for start in range(0, n_pairs, c.minibatch):
                pairs = order[start: start + c.minibatch]
                rows_idx = torch.as_tensor(np.stack([2 * pairs, 2 * pairs + 1], axis=1).ravel(), device=replies.device)
                pairs = torch.as_tensor(pairs, device=replies.device)
                sub = {k: v[pairs] for k, v in enc.items()}
                new = self.logprobs(sub, replies[rows_idx], mask[rows_idx]).view(-1, 2)
                loss = rlso_loss(new, old[pairs], rewards[pairs], c.eta)
                self.optimizer.zero_grad()
                acc.backward(loss)
                self.optimizer.step()
                losses.append(float(loss.detach()))
        self.model.eval()
        mine = [float(np.mean(losses)), losses[0], losses[-1], float(raw.mean()), float(mask.sum(dim=1).float().mean())]
        if acc.num_processes > 1:  # every process's numbers, averaged (equal batches: the mean over all pairs)
            mine = acc.gather(torch.tensor([mine], dtype=torch.float64, device=replies.device)).mean(dim=0).tolist()
        record = dict(zip(("loss", "first_loss", "last_loss", "reward", "reply_tokens"), mine))
        self.history.append(record)
        return record

    def train(self) -> Any:
        """A training job's batches over ``train_dataset``, in row order and cycling: batch ``s`` gives
        process ``p`` the ``prompts_per_step`` rows from ``(s * processes + p) * prompts_per_step``. Each
        step is logged (over all processes) in ``state.log_history``; returns the mean loss and the steps."""
        import torch

        c, acc = self.config, self.accelerator
        prompts, rows = list(self.train_dataset["prompt"]), [_row(r) for r in self.train_dataset["answer_row"]]
        per_process = c.prompts_per_step or c.minibatch
        per_step = per_process * acc.num_processes
        steps = c.batches or max(1, math.ceil(len(prompts) * self.data_epochs / per_step))
        losses = []
        for step in range(steps):
            first = step * per_step + acc.process_index * per_process
            take = [(first + i) % len(prompts) for i in range(per_process)]
            before = self.truncated
            record = self.step([prompts[i] for i in take], [rows[i] for i in take])
            truncated = acc.gather(torch.tensor([self.truncated - before], device=acc.device)).sum().item()
            losses.append(record["loss"])
            self.state.log_history.append({"step": step + 1, **{k: round(v, 6) for k, v in record.items()},
                                           "replies_truncated": int(truncated)})
            for callback in self.step_callbacks:
                callback(step + 1, steps)
        return SimpleNamespace(training_loss=float(np.mean(losses)), global_step=steps)


def _row(answer_row: Any) -> Any:
    """A training row's answer row: rows files hold it as JSON text (as TRL's rewards read it)."""
    return json.loads(answer_row) if isinstance(answer_row, str) else answer_row


def job_reward(rewards: Sequence[dict[str, Any]]) -> Callable[[list[str], list[Any]], np.ndarray]:
    """The weighted sum of ``rewards`` (RewardSpec dicts), each rebuilt by name as GRPO's are."""
    from recbench.llm.trainers.grpo import trl_reward

    parts = [(float(r.get("weight", 1.0)), trl_reward(r)) for r in rewards]

    def reward(replies: list[str], rows: list[Any]) -> np.ndarray:
        answer = [json.dumps(r) if not isinstance(r, str) else r for r in rows]
        return sum(weight * np.asarray(function(None, replies, answer), dtype=np.float64) for weight, function in parts)

    return reward


def build_rlso(ctx: BuildContext) -> RLSOTrainer:
    """RLSO for a training job: an Accelerator for this process, the job's learning rate, rewards rebuilt by name."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=ctx.args.get("use_cpu", False))
    config = replace(ctx.config, lr=float(ctx.args["learning_rate"]))
    if config.reward_fn is None and not config.rewards:
        raise ValueError("trainer 'rlso' in a training job needs rewards=[RewardSpec dicts], e.g. "
                         "[{'name': 'metric', 'weight': 1.0, 'args': {}}]")
    reward_fn = config.reward_fn or job_reward(config.rewards)
    # each process its own replies: seed + process index (one process: the job's seed, as in process)
    return RLSOTrainer(ctx.model, ctx.tokenizer, config, reward_fn, seed=int(ctx.args.get("seed", 0)) + accelerator.process_index,
                       accelerator=accelerator, train_dataset=ctx.dataset, data_epochs=float(ctx.args.get("num_train_epochs", 1.0)))


register_trainer(TrainerSpec("rlso", RLSOConfig, build_rlso, ("prompt", "answer_row"),
                             description="RLSO (LangPTune): squared loss on paired log-ratio and reward differences"))
