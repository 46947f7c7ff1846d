"""``sft``, ``sft_number``, ``sft_reason``: LoRA supervised fine-tuning for the artwork task (artwork paper, 4.2).

The model learns, from the task's labelled training choices, to answer the paper's prompt with
the engaged artwork: ``Prediction: <option> caption </option>`` (``sft``), ``<answer>N</answer>``
(``sft_number``), or a teacher's justification first (``sft_reason``: ``Reason: ... Prediction:
<option> caption </option>``, see :mod:`recbench.llm.teacher`). ``<option>`` and ``</option>``
are added tokens whose embeddings train with the adapter. One LoRA checkpoint is trained per
learning rate of ``lr_grid`` (cached, see :mod:`recbench.llm.training`) and the one with the best
validation IPS answers the test, through the same prompting, generation and parsing as
``zero_shot``.

Settings left at None come from ``preset``: ``smoke`` runs in minutes on a CPU with the embedded
model; ``paper`` states the paper's setup (Llama-3.1-8B-Instruct, every training pair, the
learning-rate grid 1e-7..1e-4, 1,000 validation pairs) for a GPU machine; pair it with the task's
``--set task.preset=paper``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.contracts import CANDIDATES, Contract
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Predictions, Targets
from recbench.llm.prompts import BuiltPrompt
from recbench.plugins.llm.zero_shot import ZeroShot, ZeroShotConfig

OPTION_TOKENS = ("<option>", "</option>")
PRESETS: dict[str, dict[str, Any]] = {
    # one pair per step (no padding: artwork prompts run 500-5,000 tokens), 4 per optimizer update
    "smoke": {"model": "smollm2-135m", "train_examples": 24, "valid_examples": 8, "lr_grid": (2e-4, 1e-3),
              "epochs": 1.0, "max_history_tokens": 256, "train_batch_size": 1, "grad_accum": 4,
              "gradient_checkpointing": False},
    "paper": {"model": "meta-llama/Llama-3.1-8B-Instruct", "train_examples": 0, "valid_examples": 1000,
              "lr_grid": (1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 1e-4), "epochs": 1.0, "max_history_tokens": 4096,
              "train_batch_size": 4, "grad_accum": 8, "gradient_checkpointing": True},
}  # fmt: skip


@dataclass(frozen=True)
class PostTrainConfig(ZeroShotConfig):
    """Inference options as in ``zero_shot``; training options below. None: the preset's value."""

    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS  # a recipe's config may state its own

    preset: Literal["smoke", "paper"] = option("smoke", "defaults for the None options: smoke (CPU, minutes) or paper (GPU)")
    model: str | None = option(None, "base model: alias, hub id or local folder (smoke: smollm2-135m; paper: Llama-3.1-8B-Instruct)")
    max_history_tokens: int | None = option(None, "token budget of the verbalized history (smoke 256, paper 4096)")
    train_examples: int | None = option(None, "training pairs used, a seeded draw; 0 = all (smoke 24, paper all)")
    valid_examples: int | None = option(None, "validation pairs that choose the learning rate (smoke 8, paper 1000)")
    lr_grid: tuple[float, ...] | None = option(None, "learning rates tried, best validation IPS kept (paper 1e-7..1e-4)")
    epochs: float | None = option(None, "passes over the training pairs")
    train_batch_size: int | None = option(None, "pairs per device per step")
    grad_accum: int | None = option(None, "steps accumulated per optimizer update")
    gradient_checkpointing: bool | None = option(None, "recompute activations in the backward pass: less memory, more time (smoke off, paper on)")
    max_length: int = option(4096, "training sequences are cut to this many tokens")
    lora_rank: int = option(8, "LoRA rank")
    lora_alpha: int = option(16, "LoRA alpha")
    lora_dropout: float = option(0.05, "LoRA dropout")
    target_modules: tuple[str, ...] = option(("all-linear",), "modules that get adapters ('all-linear', or names such as q_proj,v_proj)")
    processes: int = option(1, "training processes; above 1 trains under `accelerate launch` (one per GPU, or CPU processes)")

    def __post_init__(self) -> None:
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
        return replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})


@dataclass(frozen=True)
class SFTConfig(PostTrainConfig):
    output: Literal["text", "number", "reason"] = option("text", "answer with the caption (text) or its number")


class PostTrained(ZeroShot):
    """Shared by the post-training recipes: data, the learning-rate search, checkpoint loading."""

    contracts = frozenset({CANDIDATES})
    candidate_tables = frozenset({"artworks"})
    algorithm: ClassVar[str] = "sft"
    train_new_tokens: ClassVar[bool] = True

    def __init__(self, config: Any = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.requested = self.config  # as given: a recipe built from this one (sft_dpo's start) resolves its own preset
        self.config = self.config.resolved()
        self.chosen: dict[str, Any] = {}

    # --- fitting -------------------------------------------------------------------------------

    def fit(self, data: FitData) -> None:
        from recbench.llm.models import resolve_model

        if data.train_examples is None or data.train_targets is None:
            raise ConfigError(f"method {self.name!r} trains on labelled choices; this task gives none (use --task artwork).")
        if self.config.model.startswith(("http://", "https://")):
            raise ConfigError(f"method {self.name!r} fine-tunes local weights; --set model= takes an alias, hub id or folder.")
        self.catalog = data.catalog
        self._prepare_text(data)
        base = resolve_model(self.config.model).path
        self._tokenizer_counter(base)
        train = _draw(data.train_examples, data.train_targets, self.config.train_examples, self.seed)
        valid = _draw(data.valid, data.valid_targets, self.config.valid_examples, 0)
        parent = self.parent_model(data, base)
        with tempfile.TemporaryDirectory() as tmp:
            rows_path = Path(tmp) / "rows.jsonl"
            rows = self.training_rows(*train)
            rows_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            self.chosen = self._search(parent, rows_path, valid) | {"train_rows": len(rows), **self.data_report}

    def _prepare_text(self, data: FitData) -> None:
        from recbench.llm.verbalizers import ItemText

        self.items = ItemText(data.catalog)
        self.users = data.catalog.users.drop(columns=["user_id"], errors="ignore").to_dict("records")
        self.data_report: dict[str, Any] = {}

    def _tokenizer_counter(self, base: Path) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        self.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)
        self.token_counter = "tokenizer"

    def parent_model(self, data: FitData, base: Path) -> Path:
        """What training starts from: the base model (``sft_dpo`` starts from an SFT checkpoint)."""
        return base

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        prompts = self._choice_prompts(examples, artwork=True)
        answers = _answer_positions(examples, targets)
        return [_sft_row(p, p.forced_prefix + p.continuations[a]) for p, a in zip(prompts, answers)]

    def job(self, parent: Path, rows: Path, lr: float):
        from recbench.llm.training import TrainJob

        c = self.config
        return TrainJob(
            algorithm=self.algorithm, parent=str(parent), rows=str(rows), lr=lr, epochs=c.epochs,
            batch_size=c.train_batch_size, grad_accum=c.grad_accum, max_length=c.max_length, seed=self.seed,
            lora_rank=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
            target_modules=tuple(c.target_modules), beta=getattr(c, "beta", 0.1), new_tokens=OPTION_TOKENS,
            train_new_tokens=self.train_new_tokens, dtype="auto" if c.dtype == "auto" else c.dtype,
            gradient_checkpointing=c.gradient_checkpointing,
        )

    def _search(self, parent: Path, rows: Path, valid: tuple[ExampleSet, Targets]) -> dict[str, Any]:
        """Train one checkpoint per learning rate; keep the one with the best validation IPS."""
        from recbench.llm.training import trained_checkpoint

        trials, best = {}, None
        for lr in self.config.lr_grid:
            checkpoint = trained_checkpoint(self.job(parent, rows, lr), processes=self.config.processes)
            self.backend = self._checkpoint_backend(checkpoint)
            ips = _ips(self._choose(valid[0], artwork=True).items[:, 0], *valid)
            trials[f"{lr:g}"] = {"valid_ips": round(ips, 4), "checkpoint": checkpoint.path.name,
                                 "train_loss": checkpoint.provenance.get("train_loss"),
                                 "rows_used": checkpoint.provenance.get("rows_used"),
                                 "train_seconds": checkpoint.provenance.get("train_seconds"), "reused": checkpoint.reused}
            if best is None or ips > best[0]:
                best = (ips, lr, checkpoint, self.backend)
        ips, lr, checkpoint, self.backend = best
        self.best_checkpoint = checkpoint
        return {"lr": lr, "valid_ips": round(ips, 4), "checkpoint": str(checkpoint.path), "trials": trials}

    def _checkpoint_backend(self, checkpoint: Any) -> Any:
        from recbench.llm.local import TransformersBackend, resolve_device, resolve_dtype
        from recbench.llm.training import load_model

        device = resolve_device(self.config.device)
        dtype = resolve_dtype(self.config.dtype, device)
        model, tokenizer = load_model(checkpoint.path, dtype)
        fingerprint = f"checkpoint:{checkpoint.recipe_hash}:{str(dtype).removeprefix('torch.')}"
        backend = TransformersBackend(model.to(device), tokenizer, fingerprint=fingerprint,
                                      batch_size=self.config.batch_size, name=checkpoint.path.name)
        if self.config.cache:
            from recbench.data.store import recbench_home
            from recbench.llm.cache import CachedBackend

            backend = CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite")
        return backend

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"backend": self.backend.fingerprint, "base_model": c.model, "preset": c.preset,
                "resolved": {k: getattr(c, k) for k in c.presets[c.preset]}, **self.chosen}

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        return self._choose(examples, artwork=True)


class SFT(PostTrained):
    name = "sft"
    description = "LoRA SFT on the engaged artwork's caption (artwork paper), answers 'Prediction: <option> caption'"
    Config = SFTConfig


@dataclass(frozen=True)
class SFTNumberConfig(PostTrainConfig):
    output: Literal["text", "number", "reason"] = option("number", "the option's number, as <answer>N</answer>")


class SFTNumber(SFT):
    name = "sft_number"
    description = "LoRA SFT answering the engaged artwork's option number (the paper's number-output ablation)"
    Config = SFTNumberConfig


@dataclass(frozen=True)
class SFTReasonConfig(PostTrainConfig):
    output: Literal["text", "number", "reason"] = option("reason", "a justification, then the caption (fixed: 'reason')")
    max_new_tokens: int = option(160, "generation length limit: the justification comes before the answer")
    teacher: str = option("smollm2-135m", "the teacher: alias, hub id, folder, or http://HOST:PORT/v1#SERVED_NAME (e.g. a vLLM server)")
    teacher_max_new_tokens: int = option(96, "length limit of a teacher's justification and of its prediction")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output != "reason":
            raise ValueError(f"sft_reason trains reasoned answers: output must be 'reason', got {self.output!r}; use sft for text")


class SFTReason(SFT):
    name = "sft_reason"
    description = "LoRA SFT on a teacher's justification of the engaged artwork, then the caption (distilled reasoning)"
    Config = SFTReasonConfig

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        from recbench.llm.teacher import distill

        prompts = self._choice_prompts(examples, artwork=True)
        answers = _answer_positions(examples, targets)
        reasoned = distill(self._teacher(), prompts, answers, max_new_tokens=self.config.teacher_max_new_tokens)
        kept = [(p, a, r) for p, a, r in zip(prompts, answers, reasoned) if r.kept]
        self.data_report = {
            "teacher": self.config.teacher, "teacher_examples": len(prompts), "teacher_kept": len(kept),
            "filter_rate": round(1 - len(kept) / max(1, len(prompts)), 4),
        }
        if not kept:
            raise ConfigError(
                f"method 'sft_reason': the teacher {self.config.teacher!r} agreed with the engaged artwork on none of "
                f"{len(prompts)} examples, so there is nothing to train on. Use a stronger teacher (--set teacher=...) "
                "or more examples (--set train_examples=...)."
            )
        return [_sft_row(p, r.completion(p, a)) for p, a, r in kept]

    def _teacher(self) -> Any:
        from recbench.data.store import recbench_home
        from recbench.llm import models
        from recbench.llm.cache import CachedBackend

        backend = models.load_backend(self.config.teacher, batch_size=self.config.batch_size)
        return CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite") if self.config.cache else backend


# --- helpers shared with the DPO recipes ------------------------------------------------------


def _draw(examples: ExampleSet, targets: Targets, n: int, seed: int) -> tuple[ExampleSet, Targets]:
    """``n`` examples (0 or more than there are: all), a seeded draw in their original order."""
    if n == 0 or n >= len(examples):
        return examples, targets
    rows = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return examples.take(rows), targets.take(rows)


def _answer_positions(examples: ExampleSet, targets: Targets) -> list[int]:
    """The option index of each example's engaged artwork."""
    out = []
    for row in range(len(examples)):
        where = np.flatnonzero(examples.candidates[row] == targets.items_of(row)[0])
        out.append(int(where[0]))
    return out


def _ips(chosen: np.ndarray, examples: ExampleSet, targets: Targets) -> float:
    """IPS under uniform logging: a hit counts the number of options shown."""
    n_options = (examples.candidates >= 0).sum(axis=1)
    hits = np.array([chosen[r] == targets.items_of(r)[0] for r in range(len(examples))], dtype=np.float64)
    return float(np.mean(hits * n_options)) if len(hits) else 0.0


def _sft_row(prompt: BuiltPrompt, completion: str) -> dict[str, Any]:
    return {"prompt": list(prompt.messages), "completion": [{"role": "assistant", "content": completion}]}


@hookimpl
def recbench_register_methods(register):
    register(SFT)
    register(SFTNumber)
    register(SFTReason)
