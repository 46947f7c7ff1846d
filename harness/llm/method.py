"""The base of every LLM method: a backend, prompts from the task's interface, replies read by it.

:class:`LLMMethod` answers any task whose kind supplies an LLM interface
(:mod:`recbench.llm.interface`): candidate tasks (the chosen option first, the others in their
given order, or every option ranked by its log-likelihood with ``mode="score"``) and title lists
(grounded by the task's contract). It never looks at which task it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recbench.config import option
from recbench.contracts import CANDIDATES, GENERATION, Contract
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Predictions
from recbench.llm.backend import DecodingParams
from recbench.llm.interface import PromptStyle, TaskInterface, history_diagnostics
from recbench.llm.prompts import BuiltPrompt, whitespace_tokens
from recbench.method import FitSummary, Method, Stage


@dataclass(frozen=True)
class LLMConfig:
    """Sampling (temperature > 0) is seeded by the run's ``--seed``, so one seed is recorded per run."""

    model: str = option("smollm2-135m", "model alias, Hugging Face hub id, local folder, or http://HOST:PORT/v1#SERVED_NAME")
    mode: Literal["generate", "score"] = option("generate", "generate an answer and parse it, or rank candidates by log-likelihood")
    output: Literal["text", "number", "reason", "think"] = option(
        "text", "candidate tasks: the option's text (n-gram matched), its number, a reason then the text, or <think> then the number")
    verbalizer: str = option("auto", "history to text: template, preferences, titles, or auto (the task's default)")
    max_history_tokens: int = option(1024, "token budget of the verbalized history; the oldest interactions are dropped first")
    max_new_tokens: int = option(64, "generation length limit in tokens")
    temperature: float = option(0.0, "sampling temperature; 0 is greedy decoding")
    top_p: float = option(1.0, "nucleus sampling mass (1.0 disables it)")
    top_k: int = option(0, "sample among the k most likely tokens (0 disables it)")
    repetition_penalty: float = option(1.0, "penalty on repeated tokens (1.0 disables it)")
    normalize: Literal["mean", "sum"] = option("mean", "score mode: per-token mean or total log-likelihood of an option")
    dtype: str = option("auto", "weights dtype of a local model (auto, float32, bfloat16, float16)")
    device: str = option("auto", "device of a local model (auto, cpu, cuda)")
    batch_size: int = option(8, "prompts per forward pass (local) or concurrent requests (HTTP)")
    cache: bool = option(True, "cache generations and scores under $RECBENCH_HOME/llm-cache; a rerun costs nothing")


def task_interface(data: FitData, method: str) -> TaskInterface:
    """The task's LLM interface, or an error naming what the task lacks."""
    interface = getattr(data, "llm", None)
    if interface is None:
        raise ConfigError(
            f"method {method!r} prompts an LLM, but this task's kind supplies no LLM interface (FitData.llm is None). "
            "Run it on a task whose kind sets llm_interface (rerank, topk, artwork, learnability), or add one to yours."
        )
    return interface


class LLMMethod(Method):
    """See the module docstring. Subclasses choose the backend (``zero_shot``: a model as it is)."""

    Config = LLMConfig
    contracts = frozenset({CANDIDATES, GENERATION})
    candidate_tables = frozenset({"items", "artworks"})
    predict_batch_size = 16  # LLM batches are slow: small ones keep progress and the cache fine-grained

    def fit(self, data: FitData) -> None:
        self.task = task_interface(data, self.name)
        self.catalog = data.catalog
        if self.config.verbalizer != "auto":
            self.task.verbalizer(self.style())  # a typo fails now, not after loading a model
        self.backend = self.load_backend()
        self.count_tokens = getattr(self.backend, "count_tokens", whitespace_tokens)
        self.token_counter = "tokenizer" if hasattr(self.backend, "count_tokens") else "whitespace words"

    def load_backend(self) -> Any:
        from recbench.llm import models  # loads torch for local models: only when fitting

        c = self.config
        return self.cached(models.load_backend(c.model, dtype=c.dtype, device=c.device, batch_size=c.batch_size))

    def cached(self, backend: Any) -> Any:
        if not self.config.cache:
            return backend
        from recbench.data.store import recbench_home
        from recbench.llm.cache import CachedBackend

        return CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend.fingerprint, "history_tokens_counted_by": self.token_counter}

    # --- the plan ------------------------------------------------------------------------------

    def device(self) -> str:
        if self.config.model.startswith(("http://", "https://")):
            return "remote"
        from recbench.llm.local import resolve_device  # imports torch: called in the worker

        return resolve_device(self.config.device)

    def plan_settings(self) -> dict[str, Any]:
        c = self.config
        return {"model": c.model, "device": self.device(), "mode": c.mode, "output": c.output,
                "max_new_tokens": c.max_new_tokens, "max_history_tokens": c.max_history_tokens}

    def answer_stage(self, name: str, n: int, phase: str = "fit") -> Stage:
        """Answering ``n`` prompts with this method's model and settings (validation or test)."""
        from recbench.llm import costs

        c, device = self.config, self.device()
        if c.mode == "score":
            cost = costs.scoring_s(c.model, device, c.max_history_tokens)
        else:
            cost = costs.generation_s(c.model, device, c.max_history_tokens, c.max_new_tokens, c.batch_size)
        key = f"answer:{c.model}:{device}:{c.mode}:{c.output}:{c.max_history_tokens}:{c.max_new_tokens}:{c.batch_size}"
        return Stage(name, n, "ex", phase, cost, costs.BASIS + (", replies at their length limit" if c.mode == "generate" else "")
                     if cost is not None else "", key)

    def stages(self, data: FitSummary) -> list[Stage]:
        return [self.answer_stage(f"test {'scoring' if self.config.mode == 'score' else 'generation'}", data.test_examples,
                                  "predict")]

    def style(self) -> PromptStyle:
        counter = getattr(self, "count_tokens", whitespace_tokens)
        return PromptStyle(self.config.output, self.config.verbalizer, self.config.max_history_tokens, counter)

    def decoding(self, prompt: BuiltPrompt) -> DecodingParams:
        c = self.config
        return DecodingParams(
            max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k,
            repetition_penalty=c.repetition_penalty, seed=self.seed, forced_prefix=prompt.forced_prefix, stop=prompt.stop,
        )

    # --- prediction ----------------------------------------------------------------------------

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        style = self.style()
        prompts = self.task.prompts(examples, style)
        if self.config.mode == "score":
            return self._rank_by_likelihood(examples, prompts)
        replies = self.generate(prompts)
        predictions = self.task.predictions(examples, prompts, replies, style)
        predictions.diagnostics["avg_output_tokens"] = float(np.mean(self._last_tokens)) if self._last_tokens else 0.0
        return predictions

    def generate(self, prompts: list[BuiltPrompt]) -> list[str]:
        """Each prompt's reply, its forced prefix included (what the task's reader reads)."""
        self._last_tokens: list[int] = []
        if not prompts:
            return []
        generations = self.backend.generate([p.messages for p in prompts], self.decoding(prompts[0]))
        self._last_tokens = [g[0].n_tokens for g in generations]
        return [p.forced_prefix + g[0].text for p, g in zip(prompts, generations)]

    def _rank_by_likelihood(self, examples: ExampleSet, prompts: list[BuiltPrompt]) -> Predictions:
        """Options ordered by the log-likelihood of each option's continuation, best first."""
        if self.task.answer_kind != "choice":
            raise ConfigError(
                f"method {self.name!r}: mode=score ranks given candidates, but this task asks to generate titles and "
                "gives none. Use --set mode=generate."
            )
        if self.config.output in ("reason", "think"):
            raise ConfigError(
                f"method {self.name!r}: output={self.config.output} writes a justification before its answer, which "
                "mode=score cannot rank; use --set mode=generate, or output=text or number to score the options."
            )
        scores = self.backend.score(
            [p.messages for p in prompts], [p.continuations for p in prompts],
            forced_prefix=prompts[0].forced_prefix if prompts else "", normalize=self.config.normalize,
        ) if prompts else []
        items = np.full_like(examples.candidates, -1)
        extras = []
        for row, (prompt, option_scores) in enumerate(zip(prompts, scores)):
            option_scores = np.asarray(option_scores, dtype=np.float64)
            order = np.argsort(-option_scores, kind="stable")  # ties keep the given order
            items[row, : len(order)] = examples.candidates[row][order]
            extras.append({"history_shown": prompt.history_shown, "history_dropped": prompt.history_dropped,
                           "option_loglik": [round(float(s), 4) for s in option_scores]})
        return Predictions(items=items, extras=extras, diagnostics=history_diagnostics(prompts))
