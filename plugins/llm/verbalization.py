"""Learned verbalization (the verbalization paper, Tables 1-2): a verbalizer rewrites the history, a reasoner picks.

Every method here is a reasoner (``model``) answering the task's candidate prompt, whose history
text comes from a verbalizer (:mod:`recbench.llm.verbalization`); they differ in which verbalizer
and which stages they train:

========================== ============ ====================================================
method                     verbalizer   training
========================== ============ ====================================================
``verbal_template``        template     none (the reference row of both tables)
``verbal_zero_shot``       zero_shot    none (a prompted LLM rewrites by heuristics)
``verbal_action``          action       stage 1
``verbal_rewrite``         rewrite      stage 1
``verbal_rewrite_acc``     rewrite      stage 1 with the accuracy reward only (alpha = 1)
``verbal_rewrite_reasoner`` rewrite     stage 1, then stage 2
``verbal_reasoner_template`` template   stage 2 on template input (the "raw interactions" row)
========================== ============ ====================================================

Stage 1 (verbalizer GRPO, equation 5): the verbalizer (``verbalizer_model`` + LoRA) samples G =
``num_generations`` verbalizations per training example; each is scored by a frozen oracle
reasoner (``oracle``: a local model or an OpenAI-compatible server) with reward
``alpha * r_acc + (1 - alpha) * r_len`` (equation 6; :mod:`recbench.llm.oracle`). Stage 2
(reasoner GRPO, equation 8): the verbalizer frozen, one greedy verbalization per example, G
reasoner replies, reward +1 / -1 (equation 7, ``rewards=signed``). Both stages run TRL's
``GRPOTrainer`` through the trainer registry; the paper's symbols are its settings:
G = ``num_generations``, beta_v = beta_r = ``beta`` (KL to the reference, the LoRA-free model),
epsilon_v = epsilon_r = TRL ``epsilon`` (0.2), the per-sequence 1/|x_i| token mean then the 1/G
group mean = ``loss_type="grpo"``, advantages standardised in the group = ``scale_rewards="group"``;
with TRL's one update per generation batch the ratio rho is taken against the sampling policy.
Each stage keeps the learning rate of ``lr_grid`` with the best validation Recall@1 of the whole
pipeline. Verbalizations are cached by (verbalizer checkpoint, example) in the LLM cache, so
stage 2, validation and the test reuse them; each test example keeps its verbalization
(``extras``) and each batch reports the compression ratio, truncations and action fallbacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from recbench import hookimpl
from recbench.config import option
from recbench.contracts import Contract
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Predictions, Targets
from recbench.llm.interface import PromptStyle
from recbench.llm.method import task_interface
from recbench.llm.prompts import fit_history, whitespace_tokens
from recbench.llm.rewards import RewardSpec
from recbench.llm.verbalizers import History, get_verbalizer
from recbench.plugins.llm.grpo import GRPO, RL_PRESETS, GRPOConfig

STAGE1, STAGE2 = "verbalizer", "reasoner"
VERBAL_PRESETS: dict[str, dict[str, Any]] = {
    # about half an hour on 2 CPU cores: 16 GRPO steps of 2 examples x 4 verbalizations of 64 tokens, the dense oracle;
    # two epochs over the same 16 examples, so that the reward of epoch 2 against epoch 1 shows learning on the same
    # prompts (one epoch's per-step reward mostly tracks how hard each step's examples are); at 1e-4 eight steps
    # barely moved the policy (KL to the reference 3e-4)
    "smoke": {**RL_PRESETS["smoke"], "train_examples": 16, "valid_examples": 8, "lr_grid": (1e-3,), "epochs": 2.0,
              "max_history_tokens": 192, "verbalizer_model": "smollm2-135m", "oracle": "smollm2-135m",
              "oracle_scoring": "prob", "verbal_tokens": 64, "num_generations": 4, "prompts_per_step": 2,
              "use_vllm": False},
    "cpu": {**RL_PRESETS["cpu"], "train_examples": 64, "valid_examples": 40, "lr_grid": (1e-4,),
            "max_history_tokens": 256, "verbalizer_model": "smollm2-135m", "oracle": "qwen2.5-coder-0.5b",
            "oracle_scoring": "prob", "verbal_tokens": 96, "num_generations": 4, "prompts_per_step": 4,
            "use_vllm": False},
    # the paper: Qwen3-8B verbalizer and reasoner, a strong oracle served by vLLM, 100 interactions
    "paper": {**RL_PRESETS["paper"], "model": "Qwen/Qwen3-8B", "verbalizer_model": "Qwen/Qwen3-8B",
              "oracle": "http://127.0.0.1:8000/v1#oracle", "oracle_scoring": "choice", "verbal_tokens": 1024,
              "num_generations": 8, "prompts_per_step": 4, "max_history_tokens": 4096, "use_vllm": True},
}  # fmt: skip


@dataclass(frozen=True)
class VerbalizationConfig(GRPOConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = VERBAL_PRESETS
    model: str | None = option(None, "the reasoner: frozen, or trained in stage 2 (smoke smollm2-135m, paper Qwen/Qwen3-8B)")
    verbalizer: str = option("auto", "fixed by the method (template, zero_shot, rewrite or action); auto or that name")
    max_history_tokens: int | None = option(None, "reasoner tokens of history: the template source and the verbalization are cut to it")
    verbalizer_model: str | None = option(None, "the verbalizer's base model (smoke smollm2-135m, paper Qwen/Qwen3-8B)")
    verbal_tokens: int | None = option(None, "verbalization length limit in tokens (smoke 64, paper 1024)")
    oracle: str | None = option(None, "stage 1's frozen reasoner: alias, folder, hub id or http://HOST:PORT/v1#NAME")
    oracle_scoring: Literal["choice", "prob"] | None = option(
        None, "r_acc: choice = the oracle's greedy answer is right (0/1, paper); prob = its probability of the target (dense)")
    alpha: float = option(0.9, "stage-1 reward alpha * r_acc + (1 - alpha) * r_len")
    length_low: float = option(0.3, "r_len is 1 for compression ratios in [length_low, length_high], falling off outside")
    length_high: float = option(0.7, "upper end of the r_len plateau")
    num_generations: int | None = option(None, "G: samples per example in both stages (smoke 4, paper 8)")
    prompts_per_step: int | None = option(None, "examples per GRPO step (smoke 2, paper 4)")
    rewards: tuple[str, ...] = option(("signed",), "stage-2 reward: signed = +1 right, -1 wrong (equation 7)")
    use_vllm: bool | None = option(None, "GRPO samples generated by vLLM inside TRL (paper on: needs vllm and a GPU)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0.0 <= self.length_low < self.length_high:
            raise ValueError(f"need 0 <= length_low < length_high, got {self.length_low}, {self.length_high}")


class VerbalTemplate(GRPO):
    name = "verbal_template"
    description = "Reasoner LLM on the template verbalization (field concatenation): the verbalization paper's reference"
    Config = VerbalizationConfig
    verbalizer_kind: ClassVar[str] = "template"
    trained_stages: ClassVar[tuple[str, ...]] = ()
    length_reward: ClassVar[bool] = True
    stage: str = ""  # the stage being planned or trained (STAGE1, STAGE2); "" outside them

    # --- fitting: the stages this method trains, in order ------------------------------------

    def fit(self, data: FitData) -> None:
        c = self.config
        if c.verbalizer not in ("auto", self.verbalizer_kind):
            raise ConfigError(f"method {self.name!r} verbalizes with {self.verbalizer_kind!r}; leave verbalizer=auto "
                              "(use zero_shot --set verbalizer=NAME to put another verbalizer before a reasoner).")
        if c.mode != "generate":
            raise ConfigError(f"method {self.name!r}: the reasoner generates its answer (mode=generate).")
        self.attach(data)
        self.fitted: dict[str, Any] = {}
        self._verbalizer_backends: dict[str, Any] = {}
        for stage in self.trained_stages:
            self.stage = stage
            super().fit(data)  # PostTrained: rows of this stage, one checkpoint per lr, the best on validation
            if stage == STAGE1:
                self.verbalizer.bind(self._verbalizer_backends[self.best_checkpoint.path.name])
            self.fitted[stage] = self.chosen
        self.stage = ""

    def attach(self, data: FitData) -> None:
        """The task, catalog, frozen reasoner and verbalizer this method answers with (the start of ``fit``)."""
        self.task = task_interface(data, self.name)
        self.catalog = data.catalog
        self.reasoner = self.backend = self.load_backend()
        self.count_tokens = getattr(self.backend, "count_tokens", whitespace_tokens)
        self.verbalizer = self.build_verbalizer()

    @property
    def stage_prefix(self) -> str:  # the plan and the progress bars say which stage trains
        return f"{self.stage} " if self.stage else ""

    def fit_stages(self, data: Any) -> list[Any]:
        """The planned training of each trained stage in turn; none for the untrained rows."""
        out = []
        for stage in self.trained_stages:
            self.stage = stage
            out += super().fit_stages(data)
        self.stage = ""
        return out

    def build_verbalizer(self) -> Any:
        if self.verbalizer_kind == "template":
            return get_verbalizer("template", self.catalog)
        from recbench.llm import models
        from recbench.llm.verbalization import ModelVerbalizer

        c = self.config
        load = lambda name: self.cached(models.load_backend(name, dtype=c.dtype, device=c.device, batch_size=c.batch_size))  # noqa: E731
        return ModelVerbalizer(self.catalog, self.verbalizer_kind, model=c.verbalizer_model,
                               max_new_tokens=c.verbal_tokens, load=load)

    def parent_model(self, data: FitData, base: Any) -> Any:
        from recbench.llm.models import resolve_model

        return resolve_model(self.config.verbalizer_model).path if self.stage == STAGE1 else base

    def _checkpoint_backend(self, checkpoint: Any) -> Any:
        backend = super()._checkpoint_backend(checkpoint)
        if self.stage != STAGE1:
            return backend
        self._verbalizer_backends[checkpoint.path.name] = backend
        self.verbalizer.bind(backend)  # validation verbalizes with this checkpoint; the reasoner stays frozen
        return self.reasoner

    def training_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        if self.stage == STAGE1:
            return self.verbalizer_rows(examples, targets)
        self.prepare(examples)  # one batch of (cached) verbalizations, then the reasoner's prompts
        return super().training_rows(examples, targets)

    def verbalizer_rows(self, examples: ExampleSet, targets: Targets) -> list[dict[str, Any]]:
        """Stage 1: the verbalizer's prompt of each example, and an answer row the oracle reward reads."""
        from transformers import AutoTokenizer

        from recbench.llm.models import resolve_model
        from recbench.llm.verbalization import SlotVerbalizer, verbalizer_messages

        c, mode = self.config, self.verbalizer.mode
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(c.verbalizer_model).path)
        slot = PromptStyle(c.output, SlotVerbalizer(), c.max_history_tokens, self.count_tokens)
        prompts = self.task.prompts(examples, slot)
        rows = []
        for r, (prompt, answer) in enumerate(zip(prompts, self.task.answer_rows(examples, targets, prompts, slot))):
            source = self.verbalizer.source(History.of(examples, r), c.max_history_tokens, self.count_tokens)
            row = {**answer, "forced_prefix": "", "reasoner": prompt.messages, "reasoner_prefix": prompt.forced_prefix,
                   "stop": list(prompt.stop), "continuations": list(prompt.continuations),
                   "budget": c.max_history_tokens, "verbalizer": mode, "source_chars": len(source.text),
                   "interactions": [[i.id, i.row, i.metadata] for i in source.interactions] if mode == "action" else []}
            text = tokenizer.apply_chat_template(verbalizer_messages(mode, source.text), tokenize=False,
                                                 add_generation_prompt=True)
            rows.append({"prompt": text, "answer_row": json.dumps(row)})
        return rows

    def trainer_options(self) -> dict[str, Any]:
        options = super().trainer_options()
        c = self.config
        if c.use_vllm:
            options["use_vllm"] = True
        if self.stage != STAGE1:
            return options
        alpha = c.alpha if self.length_reward else 1.0
        rewards = [RewardSpec("oracle", alpha, {"model": c.oracle, "scoring": c.oracle_scoring, "max_tokens": c.max_new_tokens})]
        if alpha < 1.0:
            rewards.append(RewardSpec("compression", 1.0 - alpha, {"low": c.length_low, "high": c.length_high}))
        return {**options, "rewards": tuple(r.to_dict() for r in rewards), "max_completion_length": c.verbal_tokens}

    # --- answering ----------------------------------------------------------------------------

    def style(self) -> PromptStyle:
        return PromptStyle(self.config.output, self.verbalizer, self.config.max_history_tokens,
                           getattr(self, "count_tokens", whitespace_tokens))

    def prepare(self, examples: ExampleSet) -> list[Any]:
        """Each example's verbalization (generated in one batch by a model verbalizer, else the template's)."""
        c = self.config
        histories = [History.of(examples, r) for r in range(len(examples))]
        if hasattr(self.verbalizer, "prepare"):
            return self.verbalizer.prepare(histories, c.max_history_tokens, self.count_tokens)
        from recbench.llm.verbalization import Verbalization

        fitted = [fit_history(self.verbalizer, h, c.max_history_tokens, self.count_tokens) for h in histories]
        return [Verbalization(f.text, len(f.text), f.shown, f.dropped) for f in fitted]

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        made = self.prepare(examples)
        predictions = super().predict(examples, contract)
        for extra, verbalization in zip(predictions.extras, made):
            extra["verbalization"] = verbalization.text
        n = max(1, len(made))
        predictions.diagnostics.update({
            "verbal_compression_ratio": sum(v.compression for v in made) / n,
            "verbal_truncated_rate": sum(v.truncated for v in made) / n,
        })
        if self.verbalizer_kind == "action":
            predictions.diagnostics["action_fallback_rate"] = sum(v.fallbacks for v in made) / max(1, sum(v.shown for v in made))
        return predictions

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(verbalizer=self.verbalizer_kind, stages=list(self.trained_stages), trained=getattr(self, "fitted", {}))
        if self.verbalizer_kind != "template":
            out["verbalizer_backend"] = self.verbalizer.fingerprint
        return out


class VerbalZeroShot(VerbalTemplate):
    name = "verbal_zero_shot"
    description = "Reasoner LLM on a prompted LLM's heuristic rewrite of the history (no training)"
    verbalizer_kind = "zero_shot"


class VerbalAction(VerbalTemplate):
    name = "verbal_action"
    description = "Verbalizer GRPO (oracle reasoner reward) restricted to keep/drop and enrich actions per interaction"
    verbalizer_kind = "action"
    trained_stages = (STAGE1,)


class VerbalRewrite(VerbalTemplate):
    name = "verbal_rewrite"
    description = "Verbalizer GRPO: an LLM rewrites the history, rewarded by a frozen oracle reasoner and a length plateau"
    verbalizer_kind = "rewrite"
    trained_stages = (STAGE1,)


class VerbalRewriteAcc(VerbalRewrite):
    name = "verbal_rewrite_acc"
    description = "Rewrite verbalizer GRPO with the oracle's accuracy reward only (the no-length-reward ablation)"
    length_reward = False


class VerbalRewriteReasoner(VerbalRewrite):
    name = "verbal_rewrite_reasoner"
    description = "Rewrite verbalizer GRPO, then reasoner GRPO (+1/-1) on its frozen verbalizations: the full pipeline"
    trained_stages = (STAGE1, STAGE2)


class VerbalReasonerTemplate(VerbalTemplate):
    name = "verbal_reasoner_template"
    description = "Reasoner GRPO (+1/-1) on template verbalizations: the raw-interactions ablation"
    trained_stages = (STAGE2,)


METHODS = (VerbalTemplate, VerbalZeroShot, VerbalAction, VerbalRewrite, VerbalRewriteAcc, VerbalRewriteReasoner,
           VerbalReasonerTemplate)


@hookimpl
def recbench_register_methods(register):
    for method in METHODS:
        register(method)


@hookimpl
def recbench_register_rewards(register):
    from recbench.llm.oracle import REWARDS

    for name, factory in REWARDS.items():
        register(name, factory)
