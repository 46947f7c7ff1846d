"""``dpo`` and ``sft_dpo``: Direct Preference Optimization for the artwork task (artwork paper, 4.2).

Each training pair gives one preference: the engaged artwork's answer is chosen, the answer naming
a random other option of the same title is rejected (a seeded draw). ``dpo`` trains a LoRA adapter
from the base model with TRL's ``DPOTrainer``, the frozen base as reference; ``sft_dpo`` first
builds the SFT checkpoint (``sft``, or ``sft_reason`` with ``start=sft_reason``: the checkpoint
those recipes cache, so a DPO-from-SFT run reuses it) and continues from it with DPO, the SFT
model as reference. The learning rate is searched as for SFT; the starting SFT keeps its own
validation-chosen rate.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData, Targets
from recbench.plugins.llm.sft import PRESETS, SFT, PostTrainConfig, PostTrained, SFTReason, _answer_positions

# DPO runs the policy on the chosen and the rejected answer and the reference on both: about twice
# SFT's work per pair (measured on 2 CPU cores: 85 s per artwork pair against 39 s) and, without
# gradient checkpointing, a 22.8 GB peak on the 4K-token artwork prompts. The smoke preset therefore
# trains on fewer pairs, at one learning rate, with checkpointing; the paper preset is SFT's.
DPO_PRESETS: dict[str, dict[str, Any]] = {
    **PRESETS, "smoke": {**PRESETS["smoke"], "train_examples": 12, "lr_grid": (1e-3,), "gradient_checkpointing": True},
}


@dataclass(frozen=True)
class DPOConfig(PostTrainConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = DPO_PRESETS
    train_examples: int | None = option(None, "training pairs used, a seeded draw; 0 = all (smoke 12, paper all)")
    lr_grid: tuple[float, ...] | None = option(None, "learning rates tried, best validation IPS kept (smoke 1e-3, paper 1e-7..1e-4)")
    gradient_checkpointing: bool | None = option(None, "recompute activations in the backward pass: less memory, more time (smoke and paper on)")
    output: Literal["text", "number", "reason"] = option("text", "answer with the caption (text) or its number")
    beta: float = option(0.1, "DPO temperature: how far the policy may move from the reference")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.output == "reason":
            raise ValueError("dpo pairs caption answers: output must be 'text' or 'number' (use sft_dpo with start=sft_reason)")


class DPO(PostTrained):
    name = "dpo"
    description = "LoRA DPO from the base model: engaged artwork chosen, a random other option rejected"
    Config = DPOConfig
    algorithm = "dpo"
    train_new_tokens = False  # the reference shares the embeddings: the new tokens keep their initial rows

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        prompts = self._choice_prompts(examples, artwork=True)
        answers = _answer_positions(examples, targets)
        rng = np.random.default_rng(self.seed)
        rows = []
        for prompt, answer in zip(prompts, answers):
            others = [i for i in range(len(prompt.options)) if i != answer]
            if not others:
                continue
            rejected = others[int(rng.integers(len(others)))]
            say = lambda i: [{"role": "assistant", "content": prompt.forced_prefix + prompt.continuations[i]}]  # noqa: E731
            rows.append({"prompt": list(prompt.messages), "chosen": say(answer), "rejected": say(rejected)})
        return rows


@dataclass(frozen=True)
class SFTDPOConfig(DPOConfig):
    start: Literal["sft", "sft_reason"] = option("sft", "the SFT recipe whose validation-chosen checkpoint DPO starts from")
    teacher: str = option("smollm2-135m", "start=sft_reason: the teacher of the reasoning SFT")


class SFTDPO(DPO):
    name = "sft_dpo"
    description = "SFT (or SFT with reasoning) then LoRA DPO from its checkpoint, the SFT model as reference"
    Config = SFTDPOConfig

    def start_recipe(self) -> PostTrained:
        """The SFT run DPO starts from: the options set on this run, the rest from that recipe's own preset."""
        recipe = SFTReason if self.config.start == "sft_reason" else SFT
        shared = {f.name for f in fields(PostTrainConfig)} | ({"teacher"} if recipe is SFTReason else set())
        # inference length stays the recipe's own, so the start is the very checkpoint that recipe chooses
        settings = {k: getattr(self.requested, k) for k in shared if k not in ("output", "max_new_tokens")}
        if recipe is SFT:
            settings["output"] = self.config.output
        return recipe(recipe.Config(**settings), seed=self.seed)

    def parent_model(self, data: FitData, base: Path) -> Path:
        sft = self.start_recipe()
        sft.fit(data)
        self.sft_chosen = {"start": self.config.start, "start_lr": sft.chosen["lr"], "start_valid_ips": sft.chosen["valid_ips"],
                           "start_checkpoint": sft.chosen["checkpoint"]}
        return sft.best_checkpoint.path

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **getattr(self, "sft_chosen", {})}


@hookimpl
def recbench_register_methods(register):
    register(DPO)
    register(SFTDPO)
