"""``dpo`` and ``sft_dpo``: Direct Preference Optimization on the task's gold reply against a wrong one (artwork paper, 4.2).

Each training example gives one preference: the gold reply is chosen, the task interface's
rejected reply (another option of the same candidates, or another user's list) is rejected, a
seeded draw. ``dpo`` trains a LoRA adapter from the base model, the frozen base as reference;
``sft_dpo`` first builds the SFT checkpoint (``sft``, or ``sft_reason`` with ``start=sft_reason``:
the very checkpoint those recipes cache) and continues from it, the SFT model as reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, Targets
from recbench.llm.recipe import PRESETS, PostTrainConfig, PostTrained
from recbench.llm.trainers.dpo import check_dpo_weights
from recbench.plugins.llm.sft import FromSFT

# DPO runs the policy on the chosen and the rejected answer and the reference on both: about twice
# SFT's work per pair (measured on 2 CPU cores: 85 s per artwork pair against 39 s) and, without
# gradient checkpointing, a 22.8 GB peak on the 4K-token artwork prompts. The smoke preset therefore
# trains on fewer pairs, at one learning rate, with checkpointing; cpu on 200 pairs (50 steps, about
# as long as SFT's 150) at half SFT's rate; paper is SFT's.
DPO_PRESETS: dict[str, dict[str, Any]] = {
    **PRESETS, "smoke": {**PRESETS["smoke"], "train_examples": 12, "lr_grid": (1e-3,), "gradient_checkpointing": True},
    "cpu": {**PRESETS["cpu"], "train_examples": 200, "lr_grid": (5e-4,)},
}


@dataclass(frozen=True)
class DPOConfig(PostTrainConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = DPO_PRESETS
    train_examples: int | None = option(None, "training pairs used, a seeded draw; 0 = all (smoke 12, cpu 200, paper all)")
    lr_grid: tuple[float, ...] | None = option(None, "learning rates tried, best validation metric kept (smoke 1e-3, cpu 5e-4, paper 1e-7..1e-4)")
    gradient_checkpointing: bool | None = option(None, "recompute activations in the backward pass: less memory, more time (smoke and paper on)")
    output: Literal["text", "number", "reason", "think"] = option("text", "candidate tasks: answer with the option's text or its number")
    beta: float = option(0.1, "DPO temperature: how far the policy may move from the reference")
    sft_weight: float = option(0.0, "weight of the chosen reply's NLL added to the DPO loss (RPO; keeps the chosen reply "
                                    "likely); 0 = pure DPO, the paper's")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_dpo_weights(self.beta, self.sft_weight)  # before any training
        if self.output == "reason":
            raise ValueError("dpo pairs plain answers: output must be 'text' or 'number' (use sft_dpo with start=sft_reason)")


class DPO(PostTrained):
    name = "dpo"
    description = "LoRA DPO from the base model: the gold reply chosen, a wrong one rejected"
    Config = DPOConfig
    trainer = "dpo"

    def trainer_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"beta": self.config.beta}
        if self.config.sft_weight:  # absent at 0, so checkpoints trained before the option keep their keys
            options["sft_weight"] = self.config.sft_weight
        return options

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        style = self.style()
        prompts = self.task.prompts(examples, style)
        chosen = self.task.gold(examples, targets, prompts, style)
        rejected = self.task.rejected(examples, targets, prompts, style, np.random.default_rng(self.seed))
        return [self.preference_row(p, c, r) for p, c, r in zip(prompts, chosen, rejected) if r is not None]


@dataclass(frozen=True)
class SFTDPOConfig(DPOConfig):
    start: Literal["sft", "sft_reason"] = option("sft", "the SFT recipe whose validation-chosen checkpoint DPO starts from")
    start_examples: int | None = option(None, "that SFT run's training examples (None: its preset's)")
    teacher: str = option("smollm2-135m", "start=sft_reason: the teacher of the reasoning SFT")


class SFTDPO(FromSFT, DPO):
    name = "sft_dpo"
    description = "SFT (or SFT with reasoning) then LoRA DPO from its checkpoint, the SFT model as reference"
    Config = SFTDPOConfig


@hookimpl
def recbench_register_methods(register):
    register(DPO)
    register(SFTDPO)
