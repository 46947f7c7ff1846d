"""The RLHF top-k paper's pipeline (``../shared/papers/004``): SFT, DPO on metric-ranked samples, a reward model with PPO or RLOO.

Every stage reads the task only through its LLM interface, so the pipeline runs on any task that
gives labelled training examples; the paper runs it on a generated list of 5 titles.

- ``rlhf_sft``: LoRA SFT on the gold reply (paper: r=256, alpha=128, lr 5e-5, batch 8, 3 epochs).
- ``rlhf_dpo``: from the ``rlhf_sft`` checkpoint, DPO on preference pairs: ``n_samples`` replies
  per training prompt sampled from the SFT model, each scored by the task's own metric against the
  held-out next items, all n-choose-2 pairs ordered by score, ties dropped
  (:mod:`recbench.llm.preferences`; paper: r=16, alpha=16, batch 1, 2 epochs).
- ``rlhf_ppo``: a reward model (TRL ``RewardTrainer``, a one-output head on the base model, trained
  on the same pairs; its accuracy on pairs of the validation users is reported with a bootstrap
  interval that resamples users, each with all its pairs), then PPO from the SFT checkpoint against
  it (:mod:`recbench.llm.trainers.ppo`, written in recbench: TRL 1.16 has none; paper: r=8,
  alpha=32, lr 1e-5, batch 16). After training, the reward model scores the SFT start's and the
  policy's replies to the validation prompts, which no RL step saw (``rm_valid_gain``, paired):
  a rising reward curve alone can be the spread between the prompts each step drew.
- ``rlhf_rloo``: the same reward model, with TRL's maintained on-policy trainer ``RLOOTrainer``
  substituting for PPO.

Presets: ``smoke`` runs each stage in minutes on a CPU with the embedded SmolLM2-135M (small
LoRA ranks, few prompts); ``paper`` states the paper's setup on Llama-3.2-1B-Instruct for a GPU
machine (``--set processes=N`` trains under ``accelerate launch``). The paper does not state
``n`` (samples per prompt), DPO's learning rate or PPO's step count: the values here are ours.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.llm.recipe import OPTION_TOKENS, PRESETS, PostTrainConfig, PostTrained, draw

if TYPE_CHECKING:
    from recbench.llm.rewards import RewardFn

PAPER_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
# smoke: 96 training users (SFT rows, then the prompts sampled for pairs and RL), 24 validation users (SFT's
# selection, the reward model's held-out pairs), 96 new tokens (the paper's; 64 cut the list after 3 titles)
SMOKE = {**PRESETS["smoke"], "train_examples": 96, "valid_examples": 24, "lr_grid": (1e-3,), "max_new_tokens": 96}
PAPER = {**PRESETS["paper"], "model": PAPER_MODEL, "train_examples": 0, "valid_examples": 200, "max_history_tokens": 1024,
         "max_new_tokens": 96, "grad_accum": 1, "gradient_checkpointing": True}

# LoRA shapes per stage (the paper's section 4.3); smoke keeps ranks small for the CPU
SFT_PRESETS = {"smoke": {**SMOKE, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05},
               "paper": {**PAPER, "lr_grid": (5e-5,), "train_batch_size": 8, "epochs": 3.0,
                         "lora_rank": 256, "lora_alpha": 128, "lora_dropout": 0.05}}
# NDCG@5 of a small model's sample is mostly 0 (all tied): smoke samples 8 replies for each of the 96 SFT prompts
DPO_PRESETS = {"smoke": {**SFT_PRESETS["smoke"], "lr_grid": (5e-4,), "train_batch_size": 1,
                         "grad_accum": 4, "n_samples": 8},
               "paper": {**PAPER, "lr_grid": (5e-6,), "train_batch_size": 1, "epochs": 2.0, "lora_rank": 16,
                         "lora_alpha": 16, "lora_dropout": 0.05, "n_samples": 4}}
# smoke's reward model sees its ~200 pairs once: a step of 4 pairs of ~700-token rows takes 17-30 s on the CPU
RL_PRESETS = {"smoke": {**SFT_PRESETS["smoke"], "lr_grid": (2e-4,),
                        "train_batch_size": 1, "grad_accum": 1, "epochs": 0.5, "n_samples": 8, "prompts_per_step": 4,
                        "rm_lr": 1e-3, "rm_epochs": 1.0, "rm_batch_size": 4, "rm_lora_rank": 8, "rm_lora_alpha": 16},
              "paper": {**PAPER, "lr_grid": (1e-5,), "train_batch_size": 1, "epochs": 1.0, "lora_rank": 8,
                        "lora_alpha": 32, "lora_dropout": 0.1, "n_samples": 4, "prompts_per_step": 16,
                        "rm_lr": 5e-5, "rm_epochs": 1.0, "rm_batch_size": 1, "rm_lora_rank": 8, "rm_lora_alpha": 32}}


@dataclass(frozen=True)
class RLHFConfig(PostTrainConfig):
    """Options as in ``sft``; None takes the preset's value (LoRA shapes included: the paper's per stage)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = SFT_PRESETS
    preset: Literal["smoke", "cpu", "paper"] = option("smoke", "smoke (CPU, minutes, SmolLM2-135M) or paper (Llama-3.2-1B-Instruct, GPU)")
    model: str | None = option(None, "base model (smoke: smollm2-135m; paper: meta-llama/Llama-3.2-1B-Instruct)")
    max_new_tokens: int | None = option(None, "reply length limit in tokens (smoke 96, paper 96)")
    lora_rank: int | None = option(None, "LoRA rank (smoke 8; paper: SFT 256, DPO 16, PPO/RLOO 8)")
    lora_alpha: int | None = option(None, "LoRA alpha (smoke 16; paper: SFT 128, DPO 16, PPO/RLOO 32)")
    lora_dropout: float | None = option(None, "LoRA dropout (paper: 0.05, RLHF 0.1)")

    def __post_init__(self) -> None:
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be at least 1, got {self.lora_rank}")
        # before the preset is applied the LoRA shape may be None: the shared checks see a placeholder rank
        PostTrainConfig.__post_init__(self if self.lora_rank is not None else _RankPlaceholder(self))  # type: ignore[arg-type]


class _RankPlaceholder:
    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._config, name)
        return 1 if name == "lora_rank" and value is None else value


class RLHFStage(PostTrained):
    """The shared start of the stages after SFT: the ``rlhf_sft`` checkpoint, and preference pairs sampled from it."""

    Config = RLHFConfig

    def start_recipe(self) -> PostTrained:
        """``rlhf_sft`` with the options set on this run that SFT shares, the rest from SFT's own preset."""
        shared = {f.name for f in fields(PostTrainConfig)} - {"lr_grid", "epochs", "train_batch_size", "grad_accum",
                                                             "lora_rank", "lora_alpha", "lora_dropout"}
        settings = {k: getattr(self.requested, k) for k in shared}
        return RLHFSFT(RLHFSFT.Config(**settings), seed=self.seed)

    def sft_start(self, data: FitData) -> PostTrained:
        sft = self.start_recipe()
        sft.fit(data)
        metric = sft.chosen["selection_metric"]
        self.stage_report = {"sft_lr": sft.chosen["lr"], f"sft_valid_{metric}": sft.chosen[f"valid_{metric}"],
                             "sft_checkpoint": sft.chosen["checkpoint"]}
        return sft

    def preference_pairs(self, sft: PostTrained, examples: ExampleSet, targets: Targets,
                         reward: RewardFn | None = None) -> tuple[list[dict], dict]:
        """Pairs from ``n_samples`` replies of the SFT model per prompt, ranked by ``reward`` (default: the task's metric)."""
        from recbench.llm.preferences import preference_pairs, sample_replies
        from recbench.llm.rewards import RewardSpec, build_reward

        style = self.style()
        prompts = self.task.prompts(examples, style)
        rows = self.task.answer_rows(examples, targets, prompts, style)
        replies = sample_replies(sft.backend, prompts, self.config.n_samples, max_new_tokens=self.config.max_new_tokens,
                                 temperature=self.config.sample_temperature, seed=self.seed)
        if reward is None:
            spec = RewardSpec.parse(self.config.pair_reward)
            reward = build_reward(RewardSpec("metric", args={"name": self.task.selection_metric}) if spec.name == "metric"
                                  and not spec.args else spec)
        pairs, report = preference_pairs(prompts, replies, rows, reward)
        return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs], report.to_dict()

    def training_pairs(self, sft: PostTrained, examples: ExampleSet, targets: Targets) -> tuple[list[dict], dict]:
        """The pairs of the training prompts, at most ``max_pairs`` of them (a seeded random draw)."""
        import random

        pairs, report = self.preference_pairs(sft, examples, targets)
        if self.config.max_pairs is not None and len(pairs) > self.config.max_pairs:
            pairs = random.Random(self.seed).sample(pairs, self.config.max_pairs)
            report["pref_pairs_kept"] = len(pairs)
        return pairs, report

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **getattr(self, "stage_report", {})}


@dataclass(frozen=True)
class RLHFSFTConfig(RLHFConfig):
    output: Literal["text", "number", "reason", "think"] = option("text", "candidate tasks: the option's text or its number")


class RLHFSFT(PostTrained):
    name = "rlhf_sft"
    description = "SFT stage of the RLHF top-k paper: LoRA SFT on the next items' titles (paper: r=256, lr 5e-5, 3 epochs)"
    Config = RLHFSFTConfig
    trainer = "sft"

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        style = self.style()
        prompts = self.task.prompts(examples, style)
        return [self.completion_row(p, g) for p, g in zip(prompts, self.task.gold(examples, targets, prompts, style))]


@dataclass(frozen=True)
class RLHFDPOConfig(RLHFConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = DPO_PRESETS
    train_examples: int | None = option(None, "training prompts that get sampled replies (smoke 96, paper all)")
    n_samples: int | None = option(None, "replies sampled from the SFT model per prompt; all n-choose-2 pairs ranked (smoke 8, paper 4)")
    sample_temperature: float = option(1.0, "sampling temperature of those replies")
    pair_reward: str = option("metric", "what ranks the sampled replies into pairs: the task's metric (the paper), or a "
                                        "reward spec of recbench.llm.rewards, e.g. distinct (a control: a preference in the text)")
    max_pairs: int | None = option(None, "keep at most this many training pairs, drawn at random (None: all)")
    beta: float = option(0.1, "DPO temperature")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_samples is not None and self.n_samples < 2:
            raise ValueError(f"n_samples must be at least 2 (a pair), got {self.n_samples}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1 (or unset for all), got {self.max_pairs}")


class RLHFDPO(RLHFStage):
    name = "rlhf_dpo"
    description = ("DPO stage of the RLHF top-k paper: from the rlhf_sft checkpoint, on pairs of its sampled replies "
                   "ranked by the task's metric (ties dropped); paper: r=16, batch 1, 2 epochs")
    Config = RLHFDPOConfig
    trainer = "dpo"

    def trainer_options(self) -> dict[str, Any]:
        return {"beta": self.config.beta}

    def parent_model(self, data: FitData, base: Path) -> Path:
        self.sft = self.sft_start(data)
        return self.sft.best_checkpoint.path

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        pairs, report = self.training_pairs(self.sft, examples, targets)
        self.data_report = report
        if not pairs:
            raise ConfigError(f"method {self.name!r}: the {report['pref_samples']} sampled replies gave no pair with "
                              "different scores; sample more (--set n_samples=..., train_examples=...).")
        return pairs


@dataclass(frozen=True)
class RLHFRLConfig(RLHFDPOConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = RL_PRESETS
    train_examples: int | None = option(None, "training prompts: sampled for the reward model's pairs, then the RL prompts (smoke 96)")
    prompts_per_step: int | None = option(None, "prompts per RL step (paper: batch 16)")
    num_generations: int = option(4, "RLOO: replies per prompt (the leave-one-out group)")
    train_temperature: float = option(1.0, "sampling temperature during RL")
    kl_coef: float = option(0.05, "KL weight to the reference (the SFT policy)")
    ppo_epochs: int = option(2, "PPO: optimisation passes over each batch of rollouts")
    rm_lr: float | None = option(None, "reward model learning rate (paper 5e-5)")
    rm_epochs: float | None = option(None, "reward model epochs (smoke 1, paper 1)")
    rm_batch_size: int | None = option(None, "reward model pairs per step (paper 1)")
    rm_lora_rank: int | None = option(None, "reward model LoRA rank (paper 8)")
    rm_lora_alpha: int | None = option(None, "reward model LoRA alpha (paper 32)")


class RLHFPPO(RLHFStage):
    name = "rlhf_ppo"
    description = ("RLHF (PPO) of the RLHF top-k paper: a reward model (TRL RewardTrainer on the base model) on the "
                   "metric-ranked pairs, then PPO from rlhf_sft against it (recbench's PPO: clipped ratio, GAE, KL)")
    Config = RLHFRLConfig
    trainer: ClassVar[str] = "ppo"

    def fit(self, data: FitData) -> None:
        super().fit(data)
        self.stage_report.update(self.held_out_reward(data))

    def parent_model(self, data: FitData, base: Path) -> Path:
        from recbench.llm.reward_model import same_tokenizer

        self.sft = self.sft_start(data)
        self.reward_checkpoint = self.train_reward_model(data, base, self.sft)
        same_tokenizer(self.tokenizer, self.reward_checkpoint)  # a clear error before any RL step
        return self.sft.best_checkpoint.path

    def held_out_reward(self, data: FitData) -> dict[str, Any]:
        """Did the policy learn what its reward model prefers, beyond the spread between training prompts?

        The reward model's score of the SFT start's and of the trained policy's greedy replies on the validation
        prompts (no RL step saw them; both reply sets were generated for checkpoint selection, so they come from the
        cache), and the policy's gain, paired by prompt.
        """
        import numpy as np

        from recbench.llm.reward_model import reward_model_reward
        from recbench.stats import paired_difference

        examples, _ = draw(data.valid, data.valid_targets, self.config.valid_examples, 0)
        prompts = self.task.prompts(examples, self.style())
        if not prompts:
            return {}
        rows = [{"rm_prompt": list(p.messages)} for p in prompts]
        score = reward_model_reward(str(self.reward_checkpoint))
        start, policy = (np.asarray(score(who.generate(prompts), rows)) for who in (self.sft, self))
        gain = paired_difference(policy, start)
        return {"rm_valid_prompts": len(prompts), "rm_valid_score_start": round(float(start.mean()), 4),
                "rm_valid_score": round(float(policy.mean()), 4), "rm_valid_gain": round(gain.mean, 4),
                "rm_valid_gain_ci95": [round(gain.ci_low, 4), round(gain.ci_high, 4)], "rm_valid_gain_p": round(gain.p_value, 4)}

    def train_reward_model(self, data: FitData, base: Path, sft: PostTrained) -> Path:
        """The reward model on pairs of the training prompts; its accuracy on pairs of the validation prompts."""
        c = self.config
        pairs, report = self.training_pairs(sft, *draw(data.train_examples, data.train_targets, c.train_examples, self.seed))
        held_out, held_report = self.preference_pairs(sft, *draw(data.valid, data.valid_targets, c.valid_examples, 0))
        if not pairs:
            raise ConfigError(f"method {self.name!r}: no preference pair for the reward model (all samples tied); "
                              "sample more (--set n_samples=..., train_examples=...).")
        checkpoint, accuracy = self.fit_reward_model(base, pairs, held_out)
        self.stage_report.update({**report, **{k.replace("pref_", "pref_valid_"): v for k, v in held_report.items()},
                                  "rm_checkpoint": checkpoint.path.name, "rm_train_loss": checkpoint.provenance.get("train_loss"),
                                  "rm_curve": checkpoint.provenance.get("curve"), **accuracy})
        return checkpoint.path

    def fit_reward_model(self, base: Path, pairs: list[dict], held_out: list[dict]) -> tuple[Any, dict[str, Any]]:
        """A reward model on ``base`` trained on ``pairs`` (the checkpoint cache keeps it), and its accuracy on ``held_out``."""
        from recbench.llm.reward_model import pairwise_accuracy
        from recbench.llm.training import TrainJob, trained_checkpoint

        c = self.config
        with tempfile.TemporaryDirectory() as tmp:
            rows = Path(tmp) / "pairs.jsonl"
            rows.write_text("".join(json.dumps(p, sort_keys=True) + "\n" for p in pairs))
            job = TrainJob("reward_model", str(base), str(rows), lr=c.rm_lr, epochs=c.rm_epochs, batch_size=c.rm_batch_size,
                           max_length=c.max_length, seed=self.seed, lora_rank=c.rm_lora_rank, lora_alpha=c.rm_lora_alpha,
                           lora_dropout=c.lora_dropout, target_modules=tuple(c.target_modules), new_tokens=OPTION_TOKENS,
                           dtype=c.dtype, gradient_checkpointing=c.gradient_checkpointing)
            checkpoint = trained_checkpoint(job, processes=c.processes)
        return checkpoint, pairwise_accuracy(str(checkpoint.path), held_out)

    def reward_options(self) -> tuple[dict[str, Any], ...]:
        return ({"name": "reward_model", "weight": 1.0, "args": {"checkpoint": str(self.reward_checkpoint)}},)

    def prompts_per_update(self) -> int:
        return self.config.prompts_per_step

    def steps(self, rows: int) -> int:
        """One RL step per ``prompts_per_update()`` prompts, per epoch (as the trainer counts them)."""
        return self.prompt_steps(rows, self.prompts_per_update(), self.config.epochs)

    def trainer_options(self) -> dict[str, Any]:
        c = self.config
        return {"rewards": self.reward_options(), "prompts_per_step": c.prompts_per_step,
                "max_completion_length": c.max_new_tokens, "temperature": c.train_temperature, "kl_coef": c.kl_coef,
                "ppo_epochs": c.ppo_epochs}

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        style = self.style()
        prompts = self.task.prompts(examples, style)
        rows = self.task.answer_rows(examples, targets, prompts, style)
        return [{"prompt": self.render(p),
                 "answer_row": json.dumps({**row, "forced_prefix": p.forced_prefix, "rm_prompt": list(p.messages)})}
                for p, row in zip(prompts, rows)]


class RLHFRLOO(RLHFPPO):
    name = "rlhf_rloo"
    description = ("RLHF (RLOO) of the RLHF top-k paper: the rlhf_ppo reward model, with TRL's RLOOTrainer "
                   "substituting for PPO (REINFORCE with a leave-one-out baseline, KL to the SFT policy)")
    trainer = "rloo"

    def prompts_per_update(self) -> int:
        return max(1, self.config.prompts_per_step // self.config.num_generations)

    def trainer_options(self) -> dict[str, Any]:
        c = self.config
        return {"rewards": self.reward_options(), "num_generations": c.num_generations,
                "prompts_per_step": self.prompts_per_update(),
                "max_completion_length": c.max_new_tokens, "temperature": c.train_temperature, "beta": c.kl_coef}


def _register_rewards(register: Any) -> None:
    from recbench.llm.reward_model import reward_model_reward

    register("reward_model", reward_model_reward)


@hookimpl
def recbench_register_rewards(register):
    _register_rewards(register)


@hookimpl
def recbench_register_methods(register):
    for method in (RLHFSFT, RLHFDPO, RLHFPPO, RLHFRLOO):
        register(method)

