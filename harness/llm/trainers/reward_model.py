"""``reward_model``: a scalar reward head on the base model, trained on preference pairs (TRL RewardTrainer).

The model is ``AutoModelForSequenceClassification`` with ``num_labels=1`` on the parent model
folder; LoRA adapts the backbone and the ``score`` head is trained in full and saved with the
adapter (PEFT's ``SEQ_CLS`` task type). Rows are conversational ``prompt``/``chosen``/``rejected``
pairs (:mod:`recbench.llm.preferences`); the loss is ``-log sigmoid(r_chosen - r_rejected)``.
:mod:`recbench.llm.reward_model` loads the checkpoint and serves it as the reward ``reward_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class RewardModelArgs:
    center_rewards_coefficient: float = 0.0  # pulls r_chosen + r_rejected towards 0 (0: off)

    def __post_init__(self) -> None:
        if self.center_rewards_coefficient < 0:
            raise ValueError(f"center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")


@dataclass(frozen=True)
class ScorerSpec(TrainerSpec):
    """A trainer whose model is a sequence classifier with one output (the reward), not a causal LM."""

    task_type: str = "SEQ_CLS"


def build(ctx: BuildContext):
    from trl import RewardConfig, RewardTrainer

    c = ctx.config
    args = RewardConfig(center_rewards_coefficient=c.center_rewards_coefficient or None, **ctx.args)
    return RewardTrainer(model=ctx.model, args=args, train_dataset=ctx.dataset, processing_class=ctx.tokenizer)


register_trainer(ScorerSpec("reward_model", RewardModelArgs, build, ("prompt", "chosen", "rejected"),
                            trains_new_tokens=False,
                            description="TRL RewardTrainer: a sequence-classification head (num_labels=1) on the base model"))
