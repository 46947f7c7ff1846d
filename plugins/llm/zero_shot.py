"""``zero_shot``: a prompted LLM without training, for candidate tasks and title generation.

The task is read from the contract: candidates of the ``artworks`` table get the artwork paper's
prompt, other candidates the rerank prompt, a generation contract the top-k prompt. With
``mode="generate"`` the model answers and :mod:`recbench.llm.parsing` reads its choice (the
chosen candidate first, the others in their given order) or its list of titles (grounded by the
task's contract). With ``mode="score"`` every option is scored by its log-likelihood after the
prompt and the candidates are ranked by it. Every batch reports how often the output could be
used, and each example keeps the raw output and the parsed choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.contracts import CANDIDATES, GENERATION, Contract
from recbench.data.store import recbench_home
from recbench.errors import ConfigError, RecbenchError
from recbench.examples import ExampleSet, FitData, Predictions
from recbench.llm.backend import DecodingParams
from recbench.llm.parsing import (
    AMBIGUOUS, EMPTY, NO_MATCH, OUT_OF_RANGE, Choice, answer_content, choose_by_ngrams, choose_by_number, parse_title_list,
)
from recbench.llm.prompts import PREDICTION, BuiltPrompt, artwork_prompt, rerank_prompt, topk_prompt, whitespace_tokens
from recbench.llm.verbalizers import History, ItemText, Verbalizer, get_verbalizer
from recbench.method import Method


@dataclass(frozen=True)
class ZeroShotConfig:
    """Sampling (temperature > 0) is seeded by the run's ``--seed``, so one seed is recorded per run."""

    model: str = option("smollm2-135m", "model alias, Hugging Face hub id, local folder, or http://HOST:PORT/v1#SERVED_NAME")
    mode: Literal["generate", "score"] = option("generate", "generate an answer and parse it, or rank candidates by log-likelihood")
    output: Literal["text", "number", "reason"] = option(
        "text", "candidate tasks: answer with the option's text (n-gram matched), its number, or a reason then the text")
    verbalizer: str = option("auto", "history to text: template, preferences, or auto (template for candidates, preferences for topk)")
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


class ZeroShot(Method):
    name = "zero_shot"
    description = "A prompted LLM, no training: picks a candidate (rerank, artwork) or lists titles (topk)"
    Config = ZeroShotConfig
    contracts = frozenset({CANDIDATES, GENERATION})
    candidate_tables = frozenset({"items", "artworks"})
    predict_batch_size = 16  # LLM batches are slow: small ones keep progress and the cache fine-grained

    def fit(self, data: FitData) -> None:
        self.catalog = data.catalog
        self.items = ItemText(data.catalog)
        self.users = data.catalog.users.drop(columns=["user_id"], errors="ignore").to_dict("records")
        if self.config.verbalizer != "auto":
            get_verbalizer(self.config.verbalizer, data.catalog)  # a typo fails now, not after loading a model
        self.backend = self._load_backend()
        # the backend's tokenizer when it has one (local models); a word count otherwise (HTTP)
        self.count_tokens = getattr(self.backend, "count_tokens", whitespace_tokens)
        self.token_counter = "tokenizer" if hasattr(self.backend, "count_tokens") else "whitespace words"

    def _load_backend(self) -> Any:
        from recbench.llm import models  # loads torch for local models: only when fitting

        c = self.config
        backend = models.load_backend(c.model, dtype=c.dtype, device=c.device, batch_size=c.batch_size)
        if c.cache:
            from recbench.llm.cache import CachedBackend

            backend = CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite")
        return backend

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend.fingerprint, "history_tokens_counted_by": self.token_counter}

    # --- prediction ----------------------------------------------------------------------------

    def predict(self, examples: ExampleSet, contract: Contract) -> Predictions:
        if contract.kind == CANDIDATES:
            return self._choose(examples, artwork=getattr(contract, "candidate_table", "items") == "artworks")
        if self.config.mode == "score":
            raise ConfigError(
                "method 'zero_shot': mode=score ranks given candidates, but this task asks to generate titles and "
                "gives none. Use --set mode=generate for generation tasks such as topk."
            )
        return self._list_titles(examples, contract.k)

    def _verbalizer(self, auto: str) -> Verbalizer:
        name = auto if self.config.verbalizer == "auto" else self.config.verbalizer
        return get_verbalizer(name, self.catalog)

    def _decoding(self, forced_prefix: str, stop: tuple[str, ...]) -> DecodingParams:
        c = self.config
        return DecodingParams(
            max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k,
            repetition_penalty=c.repetition_penalty, seed=self.seed, forced_prefix=forced_prefix, stop=stop,
        )

    def _choice_prompts(self, examples: ExampleSet, artwork: bool) -> list[BuiltPrompt]:
        verbalizer = self._verbalizer("template")
        if artwork and "artworks" not in self.catalog.tables:
            raise RecbenchError(
                f"method 'zero_shot': the task's candidates are rows of the 'artworks' table, but catalog "
                f"{self.catalog.name!r} has no such table (it has {sorted(self.catalog.tables) or 'none'}). "
                "Run the artwork task on a dataset that provides artwork captions."
            )
        budget = dict(output=self.config.output, budget=self.config.max_history_tokens, count_tokens=self.count_tokens)
        prompts = []
        for row in range(len(examples)):
            codes = examples.candidates[row]
            codes = codes[codes >= 0]
            history = History.of(examples, row)
            if artwork:
                table = self.catalog.tables["artworks"]
                captions = table["caption"].to_numpy(dtype=object)[codes].tolist()
                title = self.items.titles[int(examples.attributes["title_item"].iloc[row])]
                prompts.append(artwork_prompt(history, title, captions, verbalizer, **budget))
            else:
                prompts.append(rerank_prompt(history, codes.tolist(), self.items, verbalizer, **budget))
        return prompts

    def _choose(self, examples: ExampleSet, artwork: bool) -> Predictions:
        if self.config.mode == "score" and self.config.output == "reason":
            raise ConfigError(
                f"method {self.name!r}: output=reason writes a justification before its answer, which mode=score "
                "cannot rank; use --set mode=generate, or output=text to score the options."
            )
        prompts = self._choice_prompts(examples, artwork)
        extras = [{"history_shown": p.history_shown, "history_dropped": p.history_dropped} for p in prompts]
        if self.config.mode == "score":
            orders, diagnostics = self._rank_by_likelihood(prompts, extras), {}
        else:
            orders, choices, tokens, tag_missing = self._rank_by_answer(prompts, extras)
            diagnostics = self._choice_diagnostics(examples, choices, tokens, tag_missing, artwork)
        candidates = examples.candidates
        items = np.full_like(candidates, -1)
        for row, order in enumerate(orders):
            items[row, : len(order)] = candidates[row][order]  # padding (-1) stays at the end
        diagnostics.update(_history_diagnostics(prompts))
        return Predictions(items=items, extras=extras, diagnostics=diagnostics)

    def _rank_by_likelihood(self, prompts: list[BuiltPrompt], extras: list[dict]) -> list[np.ndarray]:
        """Options ordered by the log-likelihood of each option's continuation, best first."""
        scores = self.backend.score(
            [p.messages for p in prompts], [p.continuations for p in prompts],
            forced_prefix=prompts[0].forced_prefix, normalize=self.config.normalize,
        )
        orders = []
        for row, option_scores in enumerate(scores):
            option_scores = np.asarray(option_scores, dtype=np.float64)
            orders.append(np.argsort(-option_scores, kind="stable"))  # ties keep the given order
            extras[row]["option_loglik"] = [round(float(s), 4) for s in option_scores]
        return orders

    def _rank_by_answer(self, prompts: list[BuiltPrompt], extras: list[dict]):
        """The parsed choice first, the other options in their given order; plus what diagnostics need."""
        generations = self.backend.generate(
            [p.messages for p in prompts], self._decoding(prompts[0].forced_prefix, prompts[0].stop)
        )
        orders, choices, tokens, tag_missing = [], [], [], []
        for row, (prompt, outputs) in enumerate(zip(prompts, generations)):
            said = prompt.forced_prefix + outputs[0].text
            if self.config.output == "text":
                choice = choose_by_ngrams(said, prompt.options)
            elif self.config.output == "reason":  # only what follows the last "Prediction:" is the answer
                _, found, answer = said.rpartition(PREDICTION)
                choice = choose_by_ngrams(answer if found else "", prompt.options)
            else:
                content, tagged = answer_content(said)
                choice = choose_by_number(content, len(prompt.options))
                tag_missing.append(not tagged)
            others = [i for i in range(len(prompt.options)) if i != choice.index]
            orders.append(np.array(([choice.index] if choice.valid else []) + others, dtype=np.int64))
            choices.append(choice)
            tokens.append(outputs[0].n_tokens)
            extras[row].update(
                llm_output=said, choice=None if choice.index is None else choice.index + 1,
                choice_status=choice.status, choice_detail=choice.detail,
            )
        return orders, choices, tokens, tag_missing

    def _choice_diagnostics(
        self, examples: ExampleSet, choices: list[Choice], tokens: list[int], tag_missing: list[bool], artwork: bool
    ) -> dict[str, float]:
        n = max(1, len(choices))
        statuses = [c.status for c in choices]
        out = {
            "valid_output_rate": sum(c.valid for c in choices) / n,
            "out_of_candidate_rate": sum(s in (NO_MATCH, OUT_OF_RANGE) for s in statuses) / n,
            "empty_output_rate": statuses.count(EMPTY) / n,
            "ambiguous_rate": statuses.count(AMBIGUOUS) / n,
            "avg_output_tokens": float(np.mean(tokens)) if tokens else 0.0,
        }
        if tag_missing:
            out["answer_tag_missing_rate"] = sum(tag_missing) / n
        if not artwork:  # candidates are items: did the model pick one the user already had?
            chosen = [
                (row, int(examples.candidates[row][c.index])) for row, c in enumerate(choices) if c.valid
            ]
            copied = sum(item in set(examples.histories.items_of(row).tolist()) for row, item in chosen)
            out["copied_from_history_rate"] = copied / max(1, len(chosen))
        return out

    def _list_titles(self, examples: ExampleSet, k: int) -> Predictions:
        verbalizer = self._verbalizer("preferences")
        attributes = examples.attributes
        cutoffs = (
            attributes["release_cutoff"].tolist()
            if attributes is not None and "release_cutoff" in attributes else [None] * len(examples)
        )
        prompts = [
            topk_prompt(
                History.of(examples, row), self.users[int(examples.users[row])], cutoffs[row], k, self.catalog.name,
                verbalizer, budget=self.config.max_history_tokens, count_tokens=self.count_tokens,
            )
            for row in range(len(examples))
        ]
        generations = self.backend.generate(
            [p.messages for p in prompts], self._decoding(prompts[0].forced_prefix, prompts[0].stop)
        ) if prompts else []
        texts, extras, unparsed = [], [], 0
        for prompt, outputs in zip(prompts, generations):
            said = prompt.forced_prefix + outputs[0].text
            parsed = parse_title_list(said)
            unparsed += parsed.format == "none"
            texts.append(parsed.titles)
            extras.append({
                "llm_output": said, "list_format": parsed.format,
                "history_shown": prompt.history_shown, "history_dropped": prompt.history_dropped,
            })
        diagnostics = {
            "unparsed_output_rate": unparsed / max(1, len(prompts)),
            "avg_output_tokens": float(np.mean([g[0].n_tokens for g in generations])) if generations else 0.0,
            **_history_diagnostics(prompts),
        }
        return Predictions(texts=texts, extras=extras, diagnostics=diagnostics)


def _history_diagnostics(prompts: list[BuiltPrompt]) -> dict[str, float]:
    n = max(1, len(prompts))
    return {
        "avg_history_shown": sum(p.history_shown for p in prompts) / n,
        "truncated_history_rate": sum(p.history_dropped > 0 for p in prompts) / n,
    }


@hookimpl
def recbench_register_methods(register):
    register(ZeroShot)
