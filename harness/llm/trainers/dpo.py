"""``dpo``: Direct Preference Optimization on prompt/chosen/rejected rows (TRL DPOTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class DPOArgs:
    beta: float = 0.1  # temperature of the implicit reward: how far the policy may move from the reference

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")


def build(ctx: BuildContext):
    from trl import DPOConfig, DPOTrainer

    return DPOTrainer(model=ctx.model, args=DPOConfig(beta=ctx.config.beta, **ctx.args), train_dataset=ctx.dataset,
                      processing_class=ctx.tokenizer)


# the frozen base is the reference and shares the embedding rows: new tokens keep their initial rows
register_trainer(TrainerSpec("dpo", DPOArgs, build, ("prompt", "chosen", "rejected"), trains_new_tokens=False,
                             description="TRL DPOTrainer"))
