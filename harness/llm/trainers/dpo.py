"""``dpo``: Direct Preference Optimization on prompt/chosen/rejected rows (TRL DPOTrainer).

``sft_weight`` > 0 adds the negative log-likelihood of the chosen reply to the DPO loss (RPO:
Pang et al. 2024, "Iterative Reasoning Preference Optimization"; TRL ``loss_type=["sigmoid",
"sft"]`` with ``loss_weights=[1, sft_weight]``). Pure DPO only asks that the chosen reply gain on
the rejected one; on short answers that differ in one token it can lower both, and measured on
the learnability task (beta 1, lr 1e-3) both log-probabilities fell from -2.9 to -11 in five
steps and the policy ended up answering nothing. The NLL term keeps the chosen reply likely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class DPOArgs:
    beta: float = 0.1  # temperature of the implicit reward: how far the policy may move from the reference
    sft_weight: float = 0.0  # weight of the chosen reply's NLL added to the DPO loss (RPO); 0 = pure DPO

    def __post_init__(self) -> None:
        check_dpo_weights(self.beta, self.sft_weight)

    def losses(self) -> dict[str, Any]:
        """TRL's ``loss_type`` and ``loss_weights`` for this config."""
        if not self.sft_weight:
            return {"loss_type": ["sigmoid"]}
        return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, self.sft_weight]}


def check_dpo_weights(beta: float, sft_weight: float) -> None:
    """The rule for DPO's ``beta`` and ``sft_weight``, shared by the recipe configs (before any training) and the job."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be 0 (pure DPO) or positive, got {sft_weight}")


def build(ctx: BuildContext):
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(beta=ctx.config.beta, **ctx.config.losses(), **ctx.args)
    return DPOTrainer(model=ctx.model, args=config, train_dataset=ctx.dataset, processing_class=ctx.tokenizer)


# the frozen base is the reference and shares the embedding rows: new tokens keep their initial rows
register_trainer(TrainerSpec("dpo", DPOArgs, build, ("prompt", "chosen", "rejected"), trains_new_tokens=False,
                             description="TRL DPOTrainer"))
