"""``grpo`` and ``rloo``: on-policy RL with rewards from :mod:`recbench.llm.rewards` (TRL GRPO/RLOO trainers).

Rows hold ``prompt`` (the chat-templated prompt text, the task's forced prefix appended) and
``answer_row`` (the task interface's JSON answer row). Each reward is rebuilt here from its
:class:`~recbench.llm.rewards.RewardSpec`, so the same job runs under ``accelerate launch``.

How the GRPO objective maps to TRL 1.16 settings: the group size G is ``num_generations``; the
KL weight to the reference policy (beta in the papers) is ``beta`` (0 drops the reference model);
``loss_type="grpo"`` is the per-sequence, per-token-normalised objective of the DeepSeekMath
paper (``"dapo"``, TRL's default, normalises over all tokens of the batch); the clip range is
``epsilon``; advantages are rewards standardised within each group (``scale_rewards="group"``).
RLOO uses the leave-one-out mean of the other G-1 rewards as the baseline.

``backward_batch`` (0: all G x prompts_per_step completions in one pass) splits each optimizer
step's completions into forward/backward passes of that many, their gradients accumulated (TRL's
``per_device_train_batch_size`` and ``gradient_accumulation_steps``; the generation batch and the
update stay the same): the activations of 8 completions of ~500 tokens took a 135M model's GRPO
run to 18 GB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from recbench import progress
from recbench.errors import ConfigError
from recbench.llm.trainers import BuildContext, TrainerSpec, register_trainer


@dataclass(frozen=True)
class GRPOArgs:
    rewards: tuple[dict[str, Any], ...] = ({"name": "metric", "weight": 1.0, "args": {}},)  # RewardSpec.to_dict() each
    num_generations: int = 8  # G: replies sampled per prompt
    prompts_per_step: int = 4  # distinct prompts in one optimizer step
    max_completion_length: int = 16
    temperature: float = 1.0
    beta: float = 0.0  # KL weight to the reference policy
    loss_type: str = "grpo"
    epsilon: float = 0.2
    scale_rewards: str = "group"
    use_vllm: bool = False  # generate with vLLM colocated in the training process (GPU machines with vllm installed)
    backward_batch: int = 0  # completions per forward/backward pass (0: the whole step's in one)

    def __post_init__(self) -> None:
        check_backward_batch(self.backward_batch, self.num_generations, self.prompts_per_step)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be at least 2 (a group needs a baseline), got {self.num_generations}")
        if not self.rewards:
            raise ValueError("rewards: name at least one reward")


def check_backward_batch(backward_batch: int, num_generations: int | None, prompts_per_step: int | None) -> None:
    """``backward_batch`` is 0 (one pass) or divides a step's ``num_generations x prompts_per_step`` completions
    (unknown counts, a preset's still to come, are checked when they are known)."""
    if backward_batch < 0:
        raise ValueError(f"backward_batch must be 0 (one pass) or positive, got {backward_batch}")
    if backward_batch and num_generations and prompts_per_step and (num_generations * prompts_per_step) % backward_batch:
        raise ValueError(f"backward_batch must divide num_generations x prompts_per_step "
                         f"({num_generations * prompts_per_step}), e.g. backward_batch={num_generations}; got {backward_batch}")


def trl_reward(spec_dict: dict[str, Any]):
    """A TRL reward function for one reward spec: reads ``answer_row`` and the completion text."""
    from recbench.llm.rewards import RewardSpec, build_reward, checked

    spec = RewardSpec(spec_dict["name"], float(spec_dict.get("weight", 1.0)), dict(spec_dict.get("args", {})))
    function = build_reward(spec)

    def reward(prompts, completions, answer_row, **_: Any) -> list[float]:
        rows = [json.loads(r) for r in answer_row]
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        replies = [row.get("forced_prefix", "") + text for row, text in zip(rows, texts)]
        with progress.hidden():  # a reward that asks a backend (an oracle) must not count as training steps
            values = function(replies, rows)
        return checked(spec.name, values, len(replies)).tolist()

    reward.__name__ = spec.name
    return reward


def _common(ctx: BuildContext) -> dict[str, Any]:
    c = ctx.config
    args = {k: v for k, v in ctx.args.items() if k not in ("max_length", "per_device_train_batch_size")}
    step = c.num_generations * c.prompts_per_step
    passes = step // c.backward_batch if c.backward_batch else 1
    accumulation = args.get("gradient_accumulation_steps", 1) * passes
    return dict(args, num_generations=c.num_generations, max_completion_length=c.max_completion_length,
                temperature=c.temperature, beta=c.beta, epsilon=c.epsilon, per_device_train_batch_size=step // passes,
                gradient_accumulation_steps=accumulation, steps_per_generation=accumulation,
                reward_weights=[float(r.get("weight", 1.0)) for r in c.rewards])


def build_grpo(ctx: BuildContext):
    from trl import GRPOConfig, GRPOTrainer

    c = ctx.config
    vllm = {}
    if c.use_vllm:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("use_vllm=true needs vLLM installed with a GPU (pip install vllm); set use_vllm=false.")
        vllm = {"use_vllm": True, "vllm_mode": "colocate"}
    config = GRPOConfig(loss_type=c.loss_type, scale_rewards=c.scale_rewards, **vllm, **_common(ctx))
    return GRPOTrainer(model=ctx.model, reward_funcs=[trl_reward(r) for r in c.rewards], args=config,
                       train_dataset=ctx.dataset, processing_class=ctx.tokenizer)


@dataclass(frozen=True)
class RLOOArgs(GRPOArgs):
    loss_type: str = "rloo"  # not a TRL option for RLOO: recorded only
    scale_rewards: str = "none"
    beta: float = 0.05


def build_rloo(ctx: BuildContext):
    from trl import RLOOConfig, RLOOTrainer

    c = ctx.config
    return RLOOTrainer(model=ctx.model, reward_funcs=[trl_reward(r) for r in c.rewards], args=RLOOConfig(**_common(ctx)),
                       train_dataset=ctx.dataset, processing_class=ctx.tokenizer)


register_trainer(TrainerSpec("grpo", GRPOArgs, build_grpo, ("prompt", "answer_row"), description="TRL GRPOTrainer"))
register_trainer(TrainerSpec("rloo", RLOOArgs, build_rloo, ("prompt", "answer_row"), description="TRL RLOOTrainer"))
