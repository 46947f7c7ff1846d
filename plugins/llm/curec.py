"""CURec (the CURec paper): an aligned LLM writes user patterns and item reasons; a reason-aware
recommender, also the reward model, ranks the full catalog; chronological correction refines both.

The pipeline of :class:`CURec` (``fit``):

1. **Alignment** (section 4.2): GRPO of the LLM (LoRA) on candidate prompts built from training
   interactions (the history before an interaction, its item among ``negatives`` items the user
   never interacted with, ``<think>...</think><answer>N</answer>`` asked), rewarded by the
   registered rule rewards ``format`` + ``legal`` + ``correct``. This is :class:`CURecAlign`, the
   ``grpo`` recipe of the post-training core with those rewards; on a candidate task it is a
   method of its own (``curec_align``, the paper's "Qwen2.5 w/ Align" row). Its reward curves,
   one per reward, are in the result (``alignment.curve``).
2. **Patterns and reasons** (4.3.1): the aligned LLM writes an interest pattern for ``pattern_users``
   users from their training history, and a reason for each of their last ``reasons_per_user``
   training interactions (from the history before it). Greedy, through the generation cache,
   whose key holds the checkpoint's content hash and the prompt: cached by (checkpoint, example).
3. **Recommender / reward model** (4.3.2, :mod:`recbench.plugins.llm.curec_model`): texts embedded
   by the sentence embedder; pattern-query attention over each item's reasons (a learned "no
   reason" slot first), SASRec's encoder over item ids, DIN over [e_u, e_i, s_ui], full-softmax NLL.
4. **Chronological correction** (4.4): ``correction_interactions`` training interactions of those
   users, split into ``windows`` equal time spans, earliest first (empty spans skipped and
   counted). Per span: one GRPO step (:class:`~recbench.llm.trainers.group_step.GroupStepTrainer`)
   on ``prompt_reason`` of its interactions, each sampled reason rewarded by the recommender's
   score of (pattern, the item's reasons plus it, the history before the interaction, the item);
   then the updated LLM rewrites each user's pattern and appends a reason (``prompt_update``).
   Prompts and rewards read only the history before each interaction.
5. The recommender ranks the full catalog with the corrected patterns and reasons (no retraining,
   as in the paper).

Ablations (the paper's Table 3): ``curec_no_align`` (the base LLM writes the texts),
``curec_no_corr`` (no step 4), ``curec_text`` (each item's "reason list" is its own text; no
reasons, no correction), ``curec_ap`` / ``curec_mlp`` / ``curec_sa`` (the reason list fused by
average pooling / an MLP / self-attention, concatenated with the pattern, instead of attention).

``smoke``: SmolLM2-135M with LoRA, MiniLM, a few dozen users' texts and a few alignment and
correction steps (minutes on a CPU); the recommender trains on every user. ``paper``: Qwen2.5-7B,
alignment lr 5e-7 for 2 epochs, recommender Adam 1e-3, batch 128, size 64 (section 5.1.4). Not
as in the paper: texts are embedded by a sentence embedder at every preset (the paper encodes them
with the LLM), the alignment's schedule is TRL's linear one (the paper's is cosine), and the
correction takes one step per time window (of at most ``correction_batch`` interactions), not one
per interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData, Histories, Predictions
from recbench.method import ScoringMethod
from recbench.plugins.llm.grpo import GRPO, RL_PRESETS, GRPOConfig

ALIGN_PRESETS: dict[str, dict[str, Any]] = {
    # activations recomputed and the history at CURec's smoke budget: without both, one GRPO step on rerank's
    # prompts (10 candidates) took the worker past 18 GB and the out-of-memory killer stopped it
    "smoke": {**RL_PRESETS["smoke"], "train_examples": 16, "gradient_checkpointing": True, "max_history_tokens": 128},
    "cpu": {**RL_PRESETS["cpu"]},
    "paper": {**RL_PRESETS["paper"], "model": "Qwen/Qwen2.5-7B-Instruct", "lr_grid": (5e-7,), "epochs": 2.0},
}  # fmt: skip


@dataclass(frozen=True)
class CURecAlignConfig(GRPOConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = ALIGN_PRESETS
    output: Literal["text", "number", "reason", "think"] = option("think", "reply format: <think>...</think><answer>N</answer>")
    max_new_tokens: int = option(64, "reply length limit, in training and at evaluation")
    rewards: tuple[str, ...] = option(("format", "legal", "correct"), "the paper's rule reward r_pre: format + legal + correct")
    num_generations: int = option(4, "G: replies sampled per prompt")
    prompts_per_step: int = option(2, "distinct prompts per optimizer step")


class CURecAlign(GRPO):
    name = "curec_align"
    description = "CURec's recommendation alignment: LoRA GRPO with the rule rewards format + legal + correct, <think> then the answer"
    Config = CURecAlignConfig


CUREC_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"model": "smollm2-135m", "embedder": "all-minilm-l6-v2", "align_prompts": 40, "align_valid": 8,
              "align_lr": 1e-3, "align_epochs": 1.0, "align_tokens": 64, "align_history_tokens": 128, "group_size": 4,
              "prompts_per_step": 2,
              "history_items": 10, "pattern_users": 32, "reasons_per_user": 3, "text_tokens": 48, "windows": 4,
              "correction_interactions": 16, "correction_batch": 4, "correction_lr": 1e-4, "correction_backward": 1, "rm_epochs": 40,
              "rm_batch": 64, "positions_per_user": 4},
    "paper": {"model": "Qwen/Qwen2.5-7B-Instruct", "embedder": "all-minilm-l6-v2", "align_prompts": 0, "align_valid": 1000,
              "align_lr": 5e-7, "align_epochs": 2.0, "align_tokens": 512, "align_history_tokens": 4096, "group_size": 8,
              "prompts_per_step": 4,
              "history_items": 50, "pattern_users": 0, "reasons_per_user": 0, "text_tokens": 256, "windows": 10,
              "correction_interactions": 0, "correction_batch": 16, "correction_lr": 5e-7, "correction_backward": 8, "rm_epochs": 200,
              "rm_batch": 128, "positions_per_user": 8},
}  # paper: section 5.1.4 (Qwen2.5, AdamW 5e-7, 2 epochs; reward model Adam 1e-3, batch 128, size 64). smoke: 20
# alignment steps at LoRA lr 1e-3 (12 steps at 2e-4 left format and legal flat; curec_align's 24 at 1e-3 moved legal);
# 40 recommender epochs at most, early-stopped (at 10 the validation NDCG was still rising: curec_text 0.044 -> 0.063);
# one correction reply per backward pass (4 replies to ~600-token prompts in one pass held 8.9 GB, one 3.0 GB)


@dataclass(frozen=True)
class CURecConfig:
    """Options left at None take the preset's value (recorded in the result as resolved)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = CUREC_PRESETS
    preset: Literal["smoke", "paper"] = option("smoke", "values of the options left at None: smoke (CPU, minutes) or paper (GPU)")
    model: str | None = option(None, "the LLM: alias, hub id or folder (smoke smollm2-135m, paper Qwen2.5-7B-Instruct)")
    embedder: str | None = option(None, "pattern/reason text embedder: alias all-minilm-l6-v2, a sentence-transformers folder or hub id")
    align_prompts: int | None = option(None, "alignment prompts (training interactions, a seeded draw; 0 = all)")
    align_valid: int | None = option(None, "validation examples scoring the aligned model (Recall@1 among the candidates)")
    align_lr: float | None = option(None, "alignment GRPO learning rate")
    align_epochs: float | None = option(None, "passes over the alignment prompts (paper 2)")
    align_tokens: int | None = option(None, "reply limit of an alignment answer (think + answer)")
    align_history_tokens: int | None = option(None, "token budget of the history in an alignment prompt (smoke 128, paper 4096)")
    negatives: int = option(4, "never-interacted items beside the target in an alignment prompt")
    group_size: int | None = option(None, "G: replies sampled per prompt, in alignment and correction")
    prompts_per_step: int | None = option(None, "alignment prompts per optimizer step")
    history_items: int | None = option(None, "most recent history items shown in pattern and reason prompts")
    pattern_users: int | None = option(None, "users whose pattern and reasons the LLM writes, a seeded draw; 0 = all")
    reasons_per_user: int | None = option(None, "reasons written per such user: their last training interactions; 0 = all")
    text_tokens: int | None = option(None, "token limit of a pattern, reason or update generation")
    windows: int | None = option(None, "chronological correction windows (equal time spans; empty ones skipped and counted)")
    correction_interactions: int | None = option(None, "training interactions corrected, a seeded draw among those users; 0 = all")
    correction_batch: int | None = option(None, "interactions per correction GRPO step (a window with more takes several steps)")
    correction_lr: float | None = option(None, "correction GRPO learning rate (LoRA on the aligned model)")
    correction_backward: int | None = option(None, "correction replies per forward/backward pass (gradients summed): memory, not the result")
    lora_rank: int = option(8, "LoRA rank of alignment and correction")
    hidden: int = option(64, "recommender size: id, pattern and reason embeddings (paper 64)")
    heads: int = option(2, "attention heads (pattern-reason attention and the sequence encoder)")
    blocks: int = option(2, "transformer blocks over item ids")
    max_len: int = option(50, "most recent items the sequence encoder reads")
    dropout: float = option(0.2, "recommender dropout")
    max_reasons: int = option(8, "most recent reasons an item keeps")
    rm_lr: float = option(1e-3, "recommender Adam learning rate (paper 1e-3)")
    rm_batch: int | None = option(None, "recommender sequences per Adam step (paper 128)")
    rm_epochs: int | None = option(None, "recommender epochs at most (early stopping on validation NDCG@10)")
    positions_per_user: int | None = option(None, "training positions per sequence and epoch, each a full-softmax NLL")
    gen_batch_size: int = option(8, "prompts per generation batch")

    def __post_init__(self) -> None:
        if self.preset not in self.presets:
            raise ValueError(f"preset must be one of {sorted(self.presets)}, got {self.preset!r}")
        if self.windows is not None and self.windows < 1:
            raise ValueError(f"windows must be at least 1, got {self.windows}")

    def resolved(self) -> CURecConfig:
        return replace(self, **{k: v for k, v in self.presets[self.preset].items() if getattr(self, k) is None})


def correction_inputs(train: Any, rows: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray, Histories]:
    """Users, items and the histories strictly before each training row (what correction may read)."""
    from recbench.plugins.llm.curec_text import history_before

    histories = [history_before(train, int(r), history) for r in rows]
    return train["user"].to_numpy()[rows], train["item"].to_numpy()[rows], Histories.from_lists(histories)


def correct_chronologically(timestamps: np.ndarray, windows: int, batch: int, step: Any, refresh: Any) -> dict[str, int]:
    """Section 4.4's loop: per time window, earliest first, GRPO ``step``(positions) on chunks of at most
    ``batch`` of its interactions, then ``refresh``(positions); empty windows are skipped and counted."""
    from recbench.plugins.llm.curec_text import chronological_windows

    spans, skipped = chronological_windows(timestamps, windows)
    steps = 0
    for members in spans:
        for start in range(0, len(members), batch):
            step(members[start: start + batch])
            steps += 1
        refresh(members)
    return {"windows": windows, "windows_run": len(spans), "windows_skipped": skipped, "correction_steps": steps}


class CURec(ScoringMethod):
    name = "curec"
    description = "CURec: aligned LLM patterns and reasons, a reason-aware recommender (also the reward model), chronological correction"
    Config = CURecConfig
    align: ClassVar[bool] = True
    correct: ClassVar[bool] = True
    text_reasons: ClassVar[bool] = False
    fusion: ClassVar[str] = "attention"

    def fit(self, data: FitData) -> None:
        import torch

        from recbench.data.catalog import sort_interactions
        from recbench.llm.embed import Embedder, item_texts
        from recbench.plugins.llm.curec_model import ReasonBank, ReasonModelConfig, train_reason_model

        super().fit(data)
        c = self.resolved = self.config.resolved()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.texts, _ = item_texts(data.catalog.items)
        self.train = sort_interactions(data.train)
        self.counts: dict[str, int] = {}
        self.alignment: dict[str, Any] = {}
        self.correction: dict[str, Any] = {}
        self.cases: list[dict[str, Any]] = []
        backend, policy_folder = self._align(data, c, rng) if self.align else self._base(c)
        patterns, reasons = self._write_texts(backend, c, rng)
        self.patterns = {user: text for user, text in patterns.items() if text}  # no pattern: the user has none
        reasons = [r for r in reasons if r[2]]  # an empty reason adds nothing to its item's list
        self.embedder = Embedder(c.embedder)
        bank = ReasonBank(self.embedder.encode(["x"]).shape[1], data.catalog.n_users, data.catalog.n_items)
        for user, vector in zip(self.patterns, self.embedder.encode(list(self.patterns.values()))):
            bank.set_pattern(user, vector)
        if self.text_reasons:  # the Text ablation: an item's own text stands for its reasons
            for item, vector in enumerate(self.embedder.encode(self.texts)):
                bank.add_reason(item, vector)
        else:
            vectors = self.embedder.encode([text for _, _, text in reasons]) if reasons else []
            for (_, item, _), vector in zip(reasons, vectors):
                bank.add_reason(item, vector)
        self.counts.update(users_with_pattern=int(bank.has_pattern.sum()),
                           items_with_reasons=sum(bool(r) for r in bank.reasons))
        rm = ReasonModelConfig(fusion=self.fusion, hidden=c.hidden, heads=c.heads, blocks=c.blocks, max_len=c.max_len,
                               dropout=c.dropout, max_reasons=c.max_reasons, lr=c.rm_lr, batch_size=c.rm_batch,
                               epochs=c.rm_epochs, positions_per_user=c.positions_per_user)
        self.model = train_reason_model(data, bank, rm, self.seed)
        if self.correct and not self.text_reasons and self.patterns:
            self._correct(backend, policy_folder, c, rng)

    # --- 1. alignment ---------------------------------------------------------------------------

    def _align(self, data: FitData, c: CURecConfig, rng: np.random.Generator) -> tuple[Any, Any]:
        from recbench.llm.interface import ItemChoice
        from recbench.plugins.llm.curec_text import candidate_examples, with_candidates

        train = self.train
        position = train.groupby("user").cumcount().to_numpy()
        eligible = np.flatnonzero(position >= 3)  # at least three items of history before the target
        n = len(eligible) if not c.align_prompts else min(c.align_prompts, len(eligible))
        rows = np.sort(rng.choice(eligible, size=n, replace=False))
        examples, targets = candidate_examples(train, rows, data.catalog.n_items, c.negatives, c.history_items, rng)
        n_valid = min(c.align_valid, len(data.valid))
        valid_rows = np.sort(np.random.default_rng(0).choice(len(data.valid), size=n_valid, replace=False))
        valid, valid_targets = data.valid.take(valid_rows), data.valid_targets.take(valid_rows)
        valid = with_candidates(valid, valid_targets, train, data.catalog.n_items, c.negatives, rng)
        fit = FitData(data.catalog, data.train, valid, valid_targets, examples, targets, llm=ItemChoice(data.catalog))
        # activations recomputed in the backward pass: the first smoke run's worker reached 14.8 GB without it
        config = CURecAlignConfig(preset="paper" if c.preset == "paper" else "smoke", model=c.model, train_examples=0,
                                  valid_examples=n_valid, lr_grid=(c.align_lr,), epochs=c.align_epochs,
                                  max_history_tokens=c.align_history_tokens, gradient_checkpointing=True,
                                  max_new_tokens=c.align_tokens, num_generations=c.group_size,
                                  prompts_per_step=c.prompts_per_step, lora_rank=c.lora_rank, lora_alpha=2 * c.lora_rank)
        aligner = CURecAlign(config, seed=self.seed)
        aligner.fit(fit)
        self.alignment = {k: aligner.chosen.get(k) for k in ("lr", "valid_recall@1", "checkpoint", "curve", "train_rows")}
        return aligner.backend, aligner.best_checkpoint.path

    def _base(self, c: CURecConfig) -> tuple[Any, Any]:
        from recbench.data.store import recbench_home
        from recbench.llm import models
        from recbench.llm.cache import CachedBackend

        backend = models.load_backend(c.model, batch_size=c.gen_batch_size)
        return CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite"), models.resolve_model(c.model).path

    # --- 2. patterns and reasons ----------------------------------------------------------------

    def generate(self, backend: Any, prompts: list[list[dict[str, str]]], tokens: int) -> list[str]:
        """Greedy replies, the forced ``<think>`` included."""
        from recbench.llm.backend import DecodingParams
        from recbench.plugins.llm.curec_text import THINK

        if not prompts:
            return []
        params = DecodingParams(max_new_tokens=tokens, forced_prefix=THINK)
        return [THINK + g[0].text for g in backend.generate(prompts, params)]

    def parsed(self, replies: list[str], tag: str, counter: str) -> list[str]:
        """Each reply's ``<tag>`` text, or its raw text when the tag is missing (counted); a reply with
        no word at all is ``""`` (counted as empty too)."""
        from recbench.plugins.llm.curec_text import tagged_text

        out = [tagged_text(r, tag) for r in replies]
        for key, n in ((counter, len(out)), (f"{counter}_unparsed", sum(not ok for _, ok in out)),
                       (f"{counter}_empty", sum(not text for text, _ in out))):
            self.counts[key] = self.counts.get(key, 0) + n
        return [text for text, _ in out]

    def _write_texts(self, backend: Any, c: CURecConfig, rng: np.random.Generator):
        from recbench.plugins.llm.curec_text import history_before, prompt_pattern, prompt_reason, user_rows

        by_user = {u: r for u, r in user_rows(self.train).items() if len(r) >= 2}
        users = np.array(sorted(by_user))
        if c.pattern_users and c.pattern_users < len(users):
            users = np.sort(rng.choice(users, size=c.pattern_users, replace=False))
        items = self.train["item"].to_numpy()
        prompts = [prompt_pattern(self.texts, items[by_user[int(u)]][-c.history_items:]) for u in users]
        patterns = dict(zip(users.tolist(), self.parsed(self.generate(backend, prompts, c.text_tokens), "pattern", "patterns")))
        if self.text_reasons:
            return patterns, []
        reason_rows = np.concatenate([by_user[int(u)][1:][-c.reasons_per_user:] if c.reasons_per_user else by_user[int(u)][1:]
                                      for u in users]) if len(users) else np.zeros(0, int)
        reason_rows = reason_rows[np.lexsort((reason_rows, self.train["timestamp"].to_numpy()[reason_rows]))]
        prompts = [prompt_reason(self.texts, history_before(self.train, int(r), c.history_items), int(items[r]))
                   for r in reason_rows]
        texts = self.parsed(self.generate(backend, prompts, c.text_tokens), "reason", "reasons")
        return patterns, [(int(r), int(items[r]), t) for r, t in zip(reason_rows, texts)]

    # --- 4. chronological correction ------------------------------------------------------------

    def _correct(self, backend: Any, policy_folder: Any, c: CURecConfig, rng: np.random.Generator) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from recbench.llm.local import TransformersBackend
        from recbench.llm.trainers.group_step import GroupStepConfig, GroupStepTrainer
        from recbench.llm.training import load_model
        from recbench.plugins.llm.curec_text import THINK, prompt_reason, prompt_update, tagged_text

        train, items = self.train, self.train["item"].to_numpy()
        users_col, ts = train["user"].to_numpy(), train["timestamp"].to_numpy()
        has_history = train.groupby("user").cumcount().to_numpy() >= 1
        eligible = np.flatnonzero(has_history & np.isin(users_col, list(self.patterns)))
        n = len(eligible) if not c.correction_interactions else min(c.correction_interactions, len(eligible))
        rows = np.sort(rng.choice(eligible, size=n, replace=False))
        rows = rows[np.lexsort((rows, ts[rows]))]
        model, tokenizer = load_model(policy_folder, torch.float32)
        lora = LoraConfig(r=c.lora_rank, lora_alpha=2 * c.lora_rank, lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM")
        policy = get_peft_model(model, lora)
        bank = self.model.bank

        def reason_prompts(positions: np.ndarray) -> list[list[dict[str, str]]]:
            _, its, hist = correction_inputs(train, rows[positions], c.history_items)
            return [prompt_reason(self.texts, hist.items_of(k), int(its[k])) for k in range(len(positions))]

        def reward(replies: list[str], metas: list[dict[str, int]]) -> np.ndarray:
            positions = np.array([m["position"] for m in metas])
            us, its, hist = correction_inputs(train, rows[positions], c.max_len)
            reasons = [tagged_text(THINK + r, "reason")[0] for r in replies]
            return self.model.reward(hist, us, its, self.embedder.encode(reasons))

        config = GroupStepConfig(num_generations=c.group_size, max_new_tokens=c.text_tokens, lr=c.correction_lr,
                                 backward_batch=c.correction_backward)
        trainer = GroupStepTrainer(policy, tokenizer, config, reward_fn=reward, seed=self.seed)
        live = TransformersBackend(policy, tokenizer, fingerprint=f"curec-correction:{self.seed}", batch_size=c.gen_batch_size)
        render = lambda m: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) + THINK  # noqa: E731
        watched = self._case_rows(rows)
        before = self.parsed(self.generate(backend, reason_prompts(watched), c.text_tokens), "reason", "case_reasons")
        patterns_before = {int(users_col[rows[p]]): self.patterns[int(users_col[rows[p]])] for p in watched}

        def step(positions: np.ndarray) -> None:
            record = trainer.step([render(m) for m in reason_prompts(positions)], [{"position": int(p)} for p in positions])
            self.correction.setdefault("curve", []).append({k: round(v, 5) for k, v in record.items()})

        def refresh(positions: np.ndarray) -> None:
            prompts = [prompt_update(self.texts, self.patterns[int(users_col[rows[p]])], int(items[rows[p]])) for p in positions]
            replies = self.generate(live, prompts, c.text_tokens)
            patterns = self.parsed(replies, "pattern", "updated_patterns")
            reasons = self.parsed(replies, "reason", "updated_reasons")
            for p, pattern, reason in zip(positions, patterns, reasons):
                user, item = int(users_col[rows[p]]), int(items[rows[p]])
                if pattern:  # an empty update keeps the user's pattern; an empty reason adds none
                    self.patterns[user] = pattern
                    bank.set_pattern(user, self.embedder.encode([pattern])[0])
                if reason:
                    bank.add_reason(item, self.embedder.encode([reason])[0])

        self.correction.update(correct_chronologically(ts[rows], c.windows, c.correction_batch, step, refresh))
        self.correction.update(interactions=len(rows), replies_truncated=trainer.truncated, replies=trainer.replies)
        after = self.parsed(self.generate(live, reason_prompts(watched), c.text_tokens), "reason", "case_reasons")
        for p, reason_before, reason_after in zip(watched, before, after):
            user, item = int(users_col[rows[p]]), int(items[rows[p]])
            self.cases.append({"user": user, "item": self.texts[item][:200], "pattern_before": patterns_before[user][:400],
                               "pattern_after": self.patterns[user][:400], "reason_before": reason_before[:400],
                               "reason_after": reason_after[:400]})

    def _case_rows(self, rows: np.ndarray) -> np.ndarray:
        """Positions (in ``rows``) of the first interaction of up to three distinct users: the case study."""
        users = self.train["user"].to_numpy()[rows]
        _, first = np.unique(users, return_index=True)
        return np.sort(first)[:3]

    # --- 5. answering ---------------------------------------------------------------------------

    def score(self, examples: ExampleSet) -> np.ndarray:
        return self.model.score(examples).astype(np.float64)

    def predict(self, examples: ExampleSet, contract: Any) -> Predictions:
        out = super().predict(examples, contract)
        out.extras = [{"pattern": self.patterns.get(int(u))} for u in examples.users]
        return out

    def describe(self) -> dict[str, Any]:
        c, m = self.resolved, self.model
        return {"resolved": {k: getattr(c, k) for k in c.presets[c.preset]}, "fusion": self.fusion, "aligned": self.align,
                "corrected": bool(self.correction), "reasons": "item text" if self.text_reasons else "LLM reasons",
                "text_counts": dict(self.counts), "embedder": self.embedder.provenance, "alignment": self.alignment,
                "recommender": {"best_epoch": m.best_epoch, "validation_ndcg@10": round(m.best_ndcg, 6),
                                "train_seconds": round(m.seconds, 1), "curve": [[e, round(v, 4)] for e, v in m.curve],
                                "first_loss": round(m.losses[0], 4) if m.losses else None,
                                "last_loss": round(m.losses[-1], 4) if m.losses else None},
                "correction": self.correction, "case_study": self.cases}


class CURecNoAlign(CURec):
    name = "curec_no_align"
    description = "CURec without alignment pretraining: the base LLM writes patterns and reasons (ablation)"
    align = False


class CURecNoCorrection(CURec):
    name = "curec_no_corr"
    description = "CURec without chronological correction (ablation w/o Corr.)"
    correct = False


class CURecText(CURec):
    name = "curec_text"
    description = "CURec with each item's raw text in place of LLM reasons (ablation Text)"
    text_reasons = True


class CURecAP(CURec):
    name = "curec_ap"
    description = "CURec with the reason list average-pooled, not pattern attention (ablation AP)"
    fusion = "ap"


class CURecMLP(CURec):
    name = "curec_mlp"
    description = "CURec with the reason list fused by an MLP and mean, not pattern attention (ablation MLP)"
    fusion = "mlp"


class CURecSA(CURec):
    name = "curec_sa"
    description = "CURec with the reason list fused by self-attention, not pattern attention (ablation SA)"
    fusion = "sa"


@hookimpl
def recbench_register_methods(register):
    for method in (CURecAlign, CURec, CURecNoAlign, CURecNoCorrection, CURecText, CURecAP, CURecMLP, CURecSA):
        register(method)
