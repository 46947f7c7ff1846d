"""``sft``: supervised fine-tuning on prompt-completion rows, loss on the completion only (TRL SFTTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class SFTArgs:
    """SFT has no options beyond the shared ones (learning rate, epochs, batch, LoRA)."""


def build(ctx: BuildContext):
    from trl import SFTConfig, SFTTrainer

    return SFTTrainer(model=ctx.model, args=SFTConfig(**ctx.args), train_dataset=ctx.dataset, processing_class=ctx.tokenizer)


register_trainer(TrainerSpec("sft", SFTArgs, build, ("prompt", "completion"), description="TRL SFTTrainer"))
