"""``sft``, ``sft_number``, ``sft_reason``: LoRA supervised fine-tuning on the task's gold replies (artwork paper, 4.2).

The model learns to answer the task's prompt with the gold reply its interface writes: the
option's text (``sft``: ``Prediction: <option> caption </option>`` on artwork), its number
(``sft_number``: ``<answer>N</answer>``), a list of titles on generation tasks, or a teacher's
justification first (``sft_reason``: ``Reason: ... Prediction: <option> ... </option>``, see
:mod:`recbench.llm.teacher`). The learning-rate search, checkpoints and inference are the shared
core's (:mod:`recbench.llm.recipe`).

Presets: ``smoke`` runs in minutes on a CPU with the embedded model; ``cpu`` trains for about a
quarter of an hour on 2 cores (the learnability bench); ``paper`` states the artwork paper's
setup (Llama-3.1-8B-Instruct, every training pair, learning rates 1e-7..1e-4, 1,000 validation
pairs) for a GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.recipe import PostTrainConfig, PostTrained
from recbench.method import FitSummary, Stage


@dataclass(frozen=True)
class SFTConfig(PostTrainConfig):
    output: Literal["text", "number", "reason", "think"] = option("text", "candidate tasks: answer with the option's text or its number")


class SFT(PostTrained):
    name = "sft"
    description = "LoRA SFT on the task's gold reply (the chosen option's text, or the list of next titles)"
    Config = SFTConfig
    trainer = "sft"

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        style = self.style()
        prompts = self.task.prompts(examples, style)
        gold = self.task.gold(examples, targets, prompts, style)
        return [self.completion_row(p, g) for p, g in zip(prompts, gold)]


@dataclass(frozen=True)
class SFTNumberConfig(PostTrainConfig):
    output: Literal["text", "number", "reason", "think"] = option("number", "the option's number, as <answer>N</answer>")


class SFTNumber(SFT):
    name = "sft_number"
    description = "LoRA SFT answering the chosen option's number (the artwork paper's number-output ablation)"
    Config = SFTNumberConfig


@dataclass(frozen=True)
class SFTReasonConfig(PostTrainConfig):
    output: Literal["text", "number", "reason", "think"] = option("reason", "a justification, then the option's text (fixed: 'reason')")
    max_new_tokens: int = option(160, "generation length limit: the justification comes before the answer")
    teacher: str = option("smollm2-135m", "the teacher: alias, hub id, folder, or http://HOST:PORT/v1#SERVED_NAME (e.g. a vLLM server)")
    teacher_max_new_tokens: int = option(96, "length limit of a teacher's justification and of its prediction")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output != "reason":
            raise ValueError(f"sft_reason trains reasoned answers: output must be 'reason', got {self.output!r}; use sft for text")


class SFTReason(SFT):
    name = "sft_reason"
    description = "LoRA SFT on a teacher's justification of the chosen option, then the option (distilled reasoning)"
    Config = SFTReasonConfig

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        from recbench.llm.teacher import TeacherLog, distill

        if self.task.answer_kind != "choice":
            raise ConfigError(f"method {self.name!r} distils justifications of a chosen option; this task asks for a list.")
        style = self.style()
        prompts = self.task.prompts(examples, style)
        answers = [rows[0] for rows in self.task.answer_positions(examples, targets)]
        teacher = self._teacher()
        log = TeacherLog.for_teacher(teacher.fingerprint) if self.config.cache else None  # an interrupt keeps every answer made
        reasoned = distill(teacher, prompts, answers, max_new_tokens=self.config.teacher_max_new_tokens, log=log,
                           chunk=self.config.batch_size, stage=f"{self.stage_prefix}teacher generation")
        kept = [(p, a, r) for p, a, r in zip(prompts, answers, reasoned) if r.kept]
        self.data_report = {
            "teacher": self.config.teacher, "teacher_examples": len(prompts), "teacher_kept": len(kept),
            "filter_rate": round(1 - len(kept) / max(1, len(prompts)), 4),
        }
        if not kept:
            raise ConfigError(
                f"method 'sft_reason': the teacher {self.config.teacher!r} agreed with the target on none of "
                f"{len(prompts)} examples, so there is nothing to train on. Use a stronger teacher (--set teacher=...) "
                "or more examples (--set train_examples=...)."
            )
        return [self.completion_row(p, r.completion(p, a)) for p, a, r in kept]

    def plan_settings(self) -> dict[str, Any]:
        return {**super().plan_settings(), "teacher": self.config.teacher}

    def data_stages(self, data: FitSummary, n_train: int) -> list[Stage]:
        """The teacher justifies, then predicts, each training example (one line of its log each)."""
        from recbench.llm import costs

        c, device = self.config, self.device()
        justify = costs.generation_s(c.teacher, device, c.max_history_tokens, c.teacher_max_new_tokens, c.batch_size)
        predict = costs.generation_s(c.teacher, device, c.max_history_tokens, c.teacher_max_new_tokens, 1)
        cost = justify + predict if justify is not None and predict is not None else None
        key = f"teacher:{c.teacher}:{device}:{c.max_history_tokens}:{c.teacher_max_new_tokens}:{c.batch_size}"
        basis = f"{costs.BASIS}, replies at their length limit" if cost is not None else ""
        return [*super().data_stages(data, n_train), Stage(f"{self.stage_prefix}teacher generation", n_train, "ex", "fit", cost, basis, key)]

    def _teacher(self) -> Any:
        """The teacher, uncached: its answers are kept once, per example, in the :class:`TeacherLog`."""
        from recbench.llm import models

        return models.load_backend(self.config.teacher, batch_size=self.config.batch_size)


class FromSFT:
    """Mixin for a recipe that may continue an SFT recipe's checkpoint (``start`` in its config).

    ``start="sft"`` (or ``"sft_reason"``) first fits that recipe with the options set on this run
    (the rest from its own preset; ``start_examples`` its training examples when the config has
    it) and trains from its validation-chosen checkpoint, the very one that recipe caches; that
    checkpoint is also the reference model of the KL or DPO term. ``start="base"``: the base model.
    """

    def start_recipe(self) -> SFT:
        kind = self.config.start
        recipe = SFTReason if kind == "sft_reason" else SFT
        shared = {f.name for f in fields(PostTrainConfig)} | ({"teacher"} if recipe is SFTReason else set())
        # inference length stays the recipe's own, so the start is the very checkpoint that recipe chooses
        settings = {k: getattr(self.requested, k) for k in shared if k not in ("output", "max_new_tokens")}
        if recipe is SFT:
            settings["output"] = self.config.output
        if getattr(self.config, "start_examples", None) is not None:
            settings["train_examples"] = self.config.start_examples
        start = recipe(recipe.Config(**settings), seed=self.seed)
        start.stage_prefix = f"{kind} start: "
        return start

    def data_stages(self, data: FitSummary, n_train: int) -> list[Stage]:
        """The start recipe's fit stages come first (its checkpoint is cached, so often reused)."""
        started = self.start_recipe().fit_stages(data) if self.config.start != "base" else []
        return [*started, *super().data_stages(data, n_train)]

    def parent_model(self, data: FitData, base: Path) -> Path:
        if self.config.start == "base":
            return base
        sft = self.start_recipe()
        sft.fit(data)
        metric = sft.chosen["selection_metric"]
        self.start_chosen = {"start": self.config.start, "start_lr": sft.chosen["lr"], "start_train_rows": sft.chosen["train_rows"],
                             f"start_valid_{metric}": sft.chosen[f"valid_{metric}"], "start_checkpoint": sft.chosen["checkpoint"]}
        return sft.best_checkpoint.path

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **getattr(self, "start_chosen", {})}


@hookimpl
def recbench_register_methods(register):
    register(SFT)
    register(SFTNumber)
    register(SFTReason)
