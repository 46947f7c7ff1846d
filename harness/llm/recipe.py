"""The shared core of the post-training recipes: data from the task, a learning-rate search, checkpoints.

A recipe is a subclass of :class:`PostTrained` that says three things:

- ``trainer``: the algorithm, a trainer of :mod:`recbench.llm.trainers` (``sft``, ``dpo``,
  ``grpo``, ``rloo``), and :meth:`PostTrained.trainer_options` for that trainer's own options;
- :meth:`PostTrained.training_rows`: the rows it trains on, built from the task's labelled
  training examples through the task's LLM interface (prompts, gold replies, answer rows);
- its config class, with its presets (``smoke``, ``cpu``, ``paper``) stated as data.

The core does the rest for every recipe alike: draws the training and validation examples, trains
one LoRA checkpoint per learning rate of ``lr_grid`` (cached by content, see
:mod:`recbench.llm.training`), scores each on validation with the task's own metric
(:attr:`~recbench.llm.interface.TaskInterface.selection_metric`, computed by
:mod:`recbench.metrics`), keeps the best, and answers the test with it through the same prompts
and reader as ``zero_shot``. The fitted report keeps every trial, the resolved preset values and
the training curve of the chosen checkpoint.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import progress
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.method import LLMConfig, LLMMethod, task_interface
from recbench.method import FitSummary, Stage

OPTION_TOKENS = ("<option>", "</option>")  # atomic tokens of the option-tagged prompts, trained with the adapter

PRESETS: dict[str, dict[str, Any]] = {
    # minutes on a CPU with the embedded model: one pair per step (no padding of long prompts), 4 per update
    "smoke": {"model": "smollm2-135m", "train_examples": 24, "valid_examples": 8, "lr_grid": (2e-4, 1e-3),
              "epochs": 1.0, "max_history_tokens": 256, "train_batch_size": 1, "grad_accum": 4,
              "gradient_checkpointing": False},
    # about 20 minutes on 2 CPU cores: 150 steps, past the ~100 steps where SmolLM2-135M starts to learn the learnability task
    "cpu": {"model": "smollm2-135m", "train_examples": 600, "valid_examples": 40, "lr_grid": (1e-3,),
            "epochs": 1.0, "max_history_tokens": 256, "train_batch_size": 4, "grad_accum": 1,
            "gradient_checkpointing": False},
    "paper": {"model": "meta-llama/Llama-3.1-8B-Instruct", "train_examples": 0, "valid_examples": 1000,
              "lr_grid": (1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 1e-4), "epochs": 1.0, "max_history_tokens": 4096,
              "train_batch_size": 4, "grad_accum": 8, "gradient_checkpointing": True},
}  # fmt: skip


@dataclass(frozen=True)
class PostTrainConfig(LLMConfig):
    """Inference options as in ``zero_shot``; training options below. None: the preset's value."""

    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS  # a recipe's config may state its own

    preset: Literal["smoke", "cpu", "paper"] = option(
        "smoke", "defaults for the None options: smoke (CPU, minutes), cpu (CPU, ~15 min of training), paper (GPU)")
    model: str | None = option(None, "base model: alias, hub id or local folder (smoke/cpu: smollm2-135m; paper: Llama-3.1-8B-Instruct)")
    max_history_tokens: int | None = option(None, "token budget of the verbalized history (smoke/cpu 256, paper 4096)")
    train_examples: int | None = option(None, "training examples used, a seeded draw; 0 = all (smoke 24, cpu 600, paper all)")
    valid_examples: int | None = option(None, "validation examples that choose the learning rate (smoke 8, cpu 40, paper 1000)")
    lr_grid: tuple[float, ...] | None = option(None, "learning rates tried, the best by the task's metric on validation kept")
    epochs: float | None = option(None, "passes over the training rows")
    train_batch_size: int | None = option(None, "rows per device per step")
    grad_accum: int | None = option(None, "steps accumulated per optimizer update")
    gradient_checkpointing: bool | None = option(None, "recompute activations in the backward pass: less memory, more time (paper on)")
    max_length: int = option(4096, "training sequences are cut to this many tokens")
    lora_rank: int = option(8, "LoRA rank")
    lora_alpha: int = option(16, "LoRA alpha")
    lora_dropout: float = option(0.05, "LoRA dropout")
    target_modules: tuple[str, ...] = option(("all-linear",), "modules that get adapters ('all-linear', or names such as q_proj,v_proj)")
    processes: int = option(1, "training processes; above 1 trains under `accelerate launch` (one per GPU, or CPU processes)")

    def __post_init__(self) -> None:
        if self.preset not in self.presets:
            raise ValueError(f"preset must be one of {sorted(self.presets)}, got {self.preset!r}")
        for name in ("train_examples", "valid_examples", "train_batch_size", "grad_accum", "max_history_tokens"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "train_examples" else 1):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.lr_grid is not None and (not self.lr_grid or min(self.lr_grid) <= 0):
            raise ValueError(f"lr_grid must list positive learning rates, e.g. lr_grid=1e-5,1e-4; got {self.lr_grid}")
        if self.processes < 1 or self.lora_rank < 1:
            raise ValueError("processes and lora_rank must be at least 1")

    def resolved(self) -> PostTrainConfig:
        """This config with every None option taken from the preset."""
        preset = self.presets[self.preset]
        return replace(self, **{k: v for k, v in preset.items() if getattr(self, k, None) is None})


def draw(examples: ExampleSet, targets: Targets, n: int, seed: int) -> tuple[ExampleSet, Targets]:
    """``n`` examples (0 or more than there are: all), a seeded draw in their original order."""
    if n == 0 or n >= len(examples):
        return examples, targets
    rows = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return examples.take(rows), targets.take(rows)


class PostTrained(LLMMethod):
    """See the module docstring."""

    Config = PostTrainConfig
    trainer: ClassVar[str] = "sft"
    stage_prefix = ""  # before each stage's name: a start recipe's stages say whose they are

    def __init__(self, config: Any = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.requested = self.config  # as given: a recipe built from this one (sft_dpo's start) resolves its own preset
        self.config = self.config.resolved()
        self.chosen: dict[str, Any] = {}
        self.data_report: dict[str, Any] = {}

    # --- what a recipe states -----------------------------------------------------------------

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        raise NotImplementedError

    def trainer_options(self) -> dict[str, Any]:
        """The chosen trainer's own options (its Config's fields), from this recipe's config."""
        return {}

    def parent_model(self, data: FitData, base: Path) -> Path:
        """What training starts from: the base model (``sft_dpo`` starts from an SFT checkpoint)."""
        return base

    # --- the plan ------------------------------------------------------------------------------

    def plan_settings(self) -> dict[str, Any]:
        c = self.config
        return {"model": c.model, "device": self.device(), "preset": c.preset, "lr_grid": c.lr_grid,
                "train_examples": c.train_examples, "valid_examples": c.valid_examples, "output": c.output,
                "max_history_tokens": c.max_history_tokens}

    def data_stages(self, data: FitSummary, n_train: int) -> list[Stage]:
        """Stages that make the training rows (``sft_reason``: the teacher; a start recipe's training)."""
        return []

    @staticmethod
    def prompt_steps(rows: int, prompts_per_step: int, epochs: float) -> int:
        """On-policy steps over ``rows`` prompts: one per ``prompts_per_step`` prompts, per epoch (GRPO, PPO, RLOO)."""
        return max(1, math.ceil(math.ceil(rows / prompts_per_step) * epochs))

    def steps(self, rows: int) -> int:
        """Optimizer steps over ``rows`` rows (the trainer reports its own count once it starts)."""
        c = self.config
        return max(1, math.ceil(math.ceil(rows / c.train_batch_size) / c.grad_accum * c.epochs))

    def fit_stages(self, data: FitSummary) -> list[Stage]:
        """Making the rows, then per learning rate: training and the validation answers that judge it."""
        from recbench.llm import costs

        c, device = self.config, self.device()
        n_train = data.train_examples if c.train_examples == 0 else min(c.train_examples, data.train_examples)
        n_valid = data.valid_examples if c.valid_examples == 0 else min(c.valid_examples, data.valid_examples)
        rows_per_step = c.train_batch_size * c.grad_accum
        step_s = costs.train_step_s(c.model, device, self.trainer, rows_per_step, c.max_history_tokens)
        basis = f"{costs.BASIS}, every row kept" if step_s is not None else ""
        key = f"train:{self.trainer}:{c.model}:{device}:{rows_per_step}:{c.max_history_tokens}"
        out = self.data_stages(data, n_train)
        for lr in c.lr_grid:
            out.append(Stage(f"{self.stage_prefix}training lr={lr:g}", self.steps(n_train), "step", "fit", step_s, basis, key))
            out.append(self.answer_stage(f"{self.stage_prefix}validation lr={lr:g}", n_valid))
        return out

    def stages(self, data: FitSummary) -> list[Stage]:
        return self.fit_stages(data) + super().stages(data)

    # --- the shared core ----------------------------------------------------------------------

    def fit(self, data: FitData) -> None:
        base = self.set_up(data)
        train = draw(data.train_examples, data.train_targets, self.config.train_examples, self.seed)
        valid = draw(data.valid, data.valid_targets, self.config.valid_examples, 0)
        parent = self.parent_model(data, base)
        with tempfile.TemporaryDirectory() as tmp:
            rows_path = Path(tmp) / "rows.jsonl"
            rows = self.training_rows(*train)
            self.check_lengths(rows)
            rows_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            self.chosen = self._search(parent, rows_path, valid) | {"train_rows": len(rows), **self.data_report}

    def set_up(self, data: FitData) -> Path:
        """The set-up before any training: the task's interface, the checks, the tokenizer; the base model's folder."""
        from recbench.llm.models import resolve_model

        self.task = task_interface(data, self.name)
        self.catalog = data.catalog
        if data.train_examples is None or data.train_targets is None or not len(data.train_examples):
            raise ConfigError(
                f"method {self.name!r} trains on labelled examples, but this task gives none (FitData.train_examples "
                "is empty). Use a task whose build() provides training examples (rerank, topk, artwork, learnability)."
            )
        if self.config.model.startswith(("http://", "https://")):
            raise ConfigError(f"method {self.name!r} fine-tunes local weights; --set model= takes an alias, hub id or folder.")
        base = resolve_model(self.config.model).path
        self._tokenizer(base)
        return base

    def _tokenizer(self, base: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.count_tokens = lambda text: len(self.tokenizer(text, add_special_tokens=False).input_ids)
        self.token_counter = "tokenizer"

    def check_lengths(self, rows: list[dict[str, Any]]) -> None:
        """Fail before training when a prompt alone exceeds the model's context."""
        limit = getattr(self.tokenizer, "model_max_length", None) or 0
        if not 0 < limit < 1_000_000:
            return
        for i, row in enumerate(rows):
            prompt = row.get("prompt")
            text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt or [])
            if self.count_tokens(text) > limit:
                raise ConfigError(
                    f"method {self.name!r}: training prompt {i} is longer than the model's context of {limit} tokens; "
                    "lower max_history_tokens (--set max_history_tokens=...)."
                )

    def render(self, prompt: Any) -> str:
        """A prompt as the text the model continues (chat template, assistant turn, forced prefix)."""
        return self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True) + prompt.forced_prefix

    def continuation(self, prompt: Any, reply: str) -> str:
        """What the model writes after :meth:`render`: ``reply`` without the forced prefix inference supplies."""
        if not reply.startswith(prompt.forced_prefix):
            raise ConfigError(f"method {self.name!r}: a training reply {reply[:60]!r} does not start with the prompt's "
                              f"forced prefix {prompt.forced_prefix!r}; the task interface's gold/rejected replies must.")
        return reply[len(prompt.forced_prefix):]

    def completion_row(self, prompt: Any, reply: str) -> dict[str, Any]:
        """An SFT row exactly as inference sees it: the rendered prompt (forced prefix included), then the rest.

        The loss falls on the completion only, so the tokens that decide the answer are not averaged
        with the prefix's fixed tokens (``<answer>``, ``Prediction: <option>``) that inference forces.
        """
        return {"prompt": self.render(prompt), "completion": self.continuation(prompt, reply)}

    def preference_row(self, prompt: Any, chosen: str, rejected: str) -> dict[str, Any]:
        """A DPO row in the same form: rendered prompt, and each reply's continuation after the prefix."""
        return {"prompt": self.render(prompt), "chosen": self.continuation(prompt, chosen),
                "rejected": self.continuation(prompt, rejected)}

    def job(self, parent: Path, rows: Path, lr: float):
        from recbench.llm.training import TrainJob

        c = self.config
        return TrainJob(
            algorithm=self.trainer, parent=str(parent), rows=str(rows), lr=lr, epochs=c.epochs,
            batch_size=c.train_batch_size, grad_accum=c.grad_accum, max_length=c.max_length, seed=self.seed,
            lora_rank=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
            target_modules=tuple(c.target_modules), options=self.trainer_options(), new_tokens=OPTION_TOKENS,
            dtype=c.dtype, gradient_checkpointing=c.gradient_checkpointing,
        )

    def validation_score(self, valid: tuple[ExampleSet, Targets]) -> float:
        """The task's selection metric of the current backend on the validation examples."""
        from recbench.metrics import score_ranking

        examples, targets = valid
        predictions = self.predict(examples, None)  # LLM methods read the task's interface, not the contract
        ranked = self.task.ranked_items(examples, predictions)
        return score_ranking(self.task.selection_metric, ranked, targets, self.task.outcome_extras(examples))

    def _search(self, parent: Path, rows: Path, valid: tuple[ExampleSet, Targets]) -> dict[str, Any]:
        """Train one checkpoint per learning rate; keep the one with the best validation metric."""
        from recbench.llm.training import trained_checkpoint

        metric = self.task.selection_metric
        trials, best = {}, None
        n_rows = sum(1 for line in rows.read_text().splitlines() if line.strip())
        for lr in self.config.lr_grid:
            with progress.stage(f"{self.stage_prefix}training lr={lr:g}", self.steps(n_rows), "step"):
                checkpoint = trained_checkpoint(self.job(parent, rows, lr), processes=self.config.processes)
                if checkpoint.reused:  # cached by content: no training happened, so no time was measured
                    progress.mark("reused")
                    progress.advance(self.steps(n_rows))
            self.backend = self._checkpoint_backend(checkpoint)
            with progress.stage(f"{self.stage_prefix}validation lr={lr:g}", len(valid[0]), "ex"):
                score = self.validation_score(valid)
            trials[f"{lr:g}"] = {f"valid_{metric}": round(score, 4), "checkpoint": checkpoint.path.name,
                                 "train_loss": checkpoint.provenance.get("train_loss"),
                                 "rows_used": checkpoint.provenance.get("rows_used"),
                                 "train_seconds": checkpoint.provenance.get("train_seconds"), "reused": checkpoint.reused}
            if best is None or score > best[0]:
                best = (score, lr, checkpoint, self.backend)
        score, lr, checkpoint, self.backend = best
        self.best_checkpoint = checkpoint
        return {"trainer": self.trainer, "lr": lr, "selection_metric": metric, f"valid_{metric}": round(score, 4),
                "checkpoint": checkpoint.path.name, "curve": checkpoint.provenance.get("curve"), "trials": trials}

    def _checkpoint_backend(self, checkpoint: Any) -> Any:
        from recbench.llm.local import TransformersBackend, resolve_device, resolve_dtype
        from recbench.llm.training import load_model

        device = resolve_device(self.config.device)
        dtype = resolve_dtype(self.config.dtype, device)
        model, tokenizer = load_model(checkpoint.path, dtype)
        fingerprint = f"checkpoint:{checkpoint.recipe_hash}:{str(dtype).removeprefix('torch.')}"
        backend = TransformersBackend(model.to(device), tokenizer, fingerprint=fingerprint,
                                      batch_size=self.config.batch_size, name=checkpoint.path.name)
        return self.cached(backend)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"backend": self.backend.fingerprint, "base_model": c.model, "preset": c.preset,
                "resolved": {k: getattr(c, k) for k in c.presets[c.preset]}, **self.chosen}
