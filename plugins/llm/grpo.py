"""``grpo`` and ``rloo``: on-policy RL of the answer with the task's own metric as reward.

For each training prompt the policy samples ``num_generations`` replies; each is read by the
task's interface and scored by the rewards named in ``rewards`` (default: the task's selection
metric, e.g. Recall@1, IPS or NDCG@5, computed by :mod:`recbench.metrics`; see
:mod:`recbench.llm.rewards` for ``format``, ``legal``, the dense ``rank`` and weighted sums).
``grpo`` standardises rewards within each group (TRL ``GRPOTrainer``, ``loss_type="grpo"``, KL
weight ``beta`` to the reference); ``rloo`` uses the leave-one-out baseline (TRL ``RLOOTrainer``).
The learning rate is chosen on validation with the task's metric, as for SFT.

What was measured on 2 CPU cores (``../shared/ASSETS.md``): a naive GRPO run (lr 5e-4, one prompt
per step, no KL) collapsed onto one answer. The presets therefore use several prompts per step,
a learning rate ten times lower, a small KL term, and replies short enough to finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, Targets
from recbench.llm.recipe import PRESETS, PostTrainConfig, PostTrained
from recbench.llm.rewards import RewardSpec, build_reward
from recbench.llm.trainers.grpo import check_backward_batch
from recbench.plugins.llm.sft import FromSFT

RL_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {**PRESETS["smoke"], "train_examples": 8, "lr_grid": (2e-4,), "train_batch_size": 1, "grad_accum": 1},
    # 32 steps of 2 prompts x 8 replies: about a quarter of an hour on 2 cores (the learnability bench)
    "cpu": {**PRESETS["cpu"], "train_examples": 64, "lr_grid": (3e-4,), "train_batch_size": 1, "grad_accum": 1},
    "paper": {**PRESETS["paper"], "lr_grid": (1e-6, 3e-6, 1e-5), "grad_accum": 1},
}  # fmt: skip


@dataclass(frozen=True)
class GRPOConfig(PostTrainConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = RL_PRESETS
    train_examples: int | None = option(None, "training prompts used, a seeded draw; 0 = all (smoke 8, cpu 64, paper all)")
    lr_grid: tuple[float, ...] | None = option(None, "learning rates tried, best validation metric kept (smoke 2e-4, cpu 3e-4)")
    output: Literal["text", "number", "reason", "think"] = option("number", "candidate tasks: the reply format the policy learns")
    max_new_tokens: int = option(8, "reply length limit, in training and at evaluation")
    rewards: tuple[str, ...] = option(
        ("metric", "0.1*legal"),
        "rewards summed: name, weight*name or name:arg=value (metric = the task's selection metric; legal = a readable answer)")
    num_generations: int = option(8, "G: replies sampled per prompt")
    prompts_per_step: int = option(4, "distinct prompts per optimizer step")
    train_temperature: float = option(1.0, "sampling temperature of the replies during training")
    beta: float = option(0.04, "KL weight to the reference policy (0 drops the reference)")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = option("grpo", "TRL's loss normalisation; grpo = per-sequence mean (DeepSeekMath)")
    start: Literal["base", "sft"] = option(
        "base", "what the policy starts from: the base model, or the checkpoint `sft` chooses (same output; the reference of the KL term)")
    start_examples: int | None = option(None, "start=sft: that SFT run's training examples (None: its preset's)")
    backward_batch: int = option(0, "replies per forward/backward pass, gradients summed into one update (0: the whole step's "
                                    "at once); less memory, the same update")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_backward_batch(self.backward_batch, self.num_generations, self.prompts_per_step)  # before any training

    def reward_specs(self, selection_metric: str) -> tuple[RewardSpec, ...]:
        specs = []
        for text in self.rewards:
            spec = RewardSpec.parse(text)
            if spec.name == "metric" and "name" not in spec.args:
                spec = RewardSpec(spec.name, spec.weight, {"name": selection_metric})
            build_reward(spec)  # an unknown name or bad argument fails before any training
            specs.append(spec)
        return tuple(specs)


class GRPO(FromSFT, PostTrained):
    name = "grpo"
    description = "LoRA GRPO (from the base model, or the SFT checkpoint with start=sft), rewarded by the task's own metric of each sampled reply"
    Config = GRPOConfig
    trainer: ClassVar[str] = "grpo"

    def trainer_options(self) -> dict[str, Any]:
        c = self.config
        options = {"rewards": tuple(s.to_dict() for s in c.reward_specs(self.task.selection_metric)),
                   "num_generations": c.num_generations, "prompts_per_step": c.prompts_per_step,
                   "max_completion_length": c.max_new_tokens, "temperature": c.train_temperature, "beta": c.beta}
        if self.trainer == "grpo":
            options["loss_type"] = c.loss_type
        if c.backward_batch:  # absent at 0, so checkpoints trained before the option keep their keys
            options["backward_batch"] = c.backward_batch
        return options

    def steps(self, rows: int) -> int:
        """One optimizer step per ``prompts_per_step`` prompts (each with ``num_generations`` replies), per epoch."""
        return self.prompt_steps(rows, self.config.prompts_per_step, self.config.epochs)

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        import json

        style = self.style()
        prompts = self.task.prompts(examples, style)
        rows = self.task.answer_rows(examples, targets, prompts, style)
        return [{"prompt": self.render(p), "answer_row": json.dumps({**row, "forced_prefix": p.forced_prefix})}
                for p, row in zip(prompts, rows)]


@dataclass(frozen=True)
class RLOOConfig(GRPOConfig):
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = option("grpo", "not used by RLOO (recorded only)")


class RLOO(GRPO):
    name = "rloo"
    description = "LoRA RLOO (REINFORCE, leave-one-out baseline) rewarded by the task's own metric; TRL's on-policy trainer"
    Config = RLOOConfig
    trainer = "rloo"


@hookimpl
def recbench_register_methods(register):
    register(GRPO)
    register(RLOO)
