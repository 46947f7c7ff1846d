"""What a task tells an LLM method: the prompt of an example, its gold answer, and how to read a reply.

A task kind names a :class:`TaskInterface` subclass in its ``llm_interface`` attribute and puts
an instance on :attr:`FitData.llm <recbench.examples.FitData>`. Every LLM method (``zero_shot``
and each post-training recipe) talks to the task only through it, so no method mentions a task:

- :meth:`TaskInterface.prompts`: chat prompts of examples, in a :class:`PromptStyle` the method
  chooses (answer format, verbalizer, history budget);
- :meth:`TaskInterface.gold`: the reply that would be right, for supervised training;
- :meth:`TaskInterface.answer_rows`: per example, a JSON-ready row with everything needed to read
  a reply and score it against the target (options, gold positions, propensity, ...). Rewards
  (:mod:`recbench.llm.rewards`) see only these rows, so they can be rebuilt inside a training
  subprocess or under ``accelerate launch``;
- :func:`read_reply`: one reply plus its row gives a :class:`Reading` (the ranked answer and a
  parse status), the same function whether at evaluation or inside a reward;
- :meth:`TaskInterface.predictions`: replies of a batch as :class:`~recbench.examples.Predictions`
  for the task's contract, with parse diagnostics;
- :attr:`TaskInterface.selection_metric`: the task's own per-example metric (a name from
  :mod:`recbench.metrics`), used to choose a learning rate on validation and as the default reward.

Built-ins: :class:`ItemChoice` (candidate items: ``rerank`` and the learnability task),
:class:`ArtworkChoice` (a title's captioned artworks) and :class:`TitleList` (``topk``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from recbench.errors import ConfigError
from recbench.examples import CatalogView, ExampleSet, Predictions, Targets
from recbench.llm.parsing import (
    AMBIGUOUS, EMPTY, NO_MATCH, OK, OUT_OF_RANGE, Choice, answer_content, choose_by_ngrams, choose_by_number, parse_title_list,
)
from recbench.llm.prompts import (
    PREDICTION, BuiltPrompt, artwork_prompt, choice_prompt, rerank_prompt, topk_prompt, whitespace_tokens,
)
from recbench.llm.verbalizers import History, ItemText, get_verbalizer

OUTPUTS = ("text", "number", "reason", "think")


@dataclass(frozen=True)
class PromptStyle:
    """How a method wants its prompts: answer format, history verbalizer and its token budget."""

    output: str = "text"  # choice tasks: text | number | reason | think (ignored by list tasks)
    verbalizer: Any = "auto"  # a registered name (auto: the task's default), or a verbalizer object
    budget: int = 1024
    count_tokens: Callable[[str], int] = whitespace_tokens

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")


@dataclass(frozen=True)
class Reading:
    """A reply read against its row: ``ranked`` answer positions (option indices or item codes), best first."""

    ranked: tuple[int, ...]
    status: str
    valid: bool
    detail: str = ""
    formatted: bool = True  # the reply kept the asked-for shape (answer tags, a list)
    # the reply commits to an answer: exactly one option, inside the answer tag where the format has one (a
    # reply listing several options, or a number outside the tag, is read for evaluation but commits to none)
    answered: bool = True


class TaskInterface:
    """Base class: see the module docstring. Subclasses set the class attributes and the methods."""

    answer_kind: ClassVar[str]  # "choice" (order given candidates) or "titles" (generate a list)
    default_verbalizer: ClassVar[str]
    selection_metric: ClassVar[str]  # a per-example metric of recbench.metrics, e.g. "recall@1"

    def __init__(self, catalog: CatalogView, params: Any = None) -> None:
        self.catalog = catalog
        self.params = params
        self.items = ItemText(catalog)
        self.users = catalog.users.drop(columns=["user_id"], errors="ignore").to_dict("records")

    def verbalizer(self, style: PromptStyle):
        if not isinstance(style.verbalizer, str):  # a verbalizer object a method built (a trained one)
            return style.verbalizer
        return get_verbalizer(self.default_verbalizer if style.verbalizer == "auto" else style.verbalizer, self.catalog)

    def prompts(self, examples: ExampleSet, style: PromptStyle) -> list[BuiltPrompt]:
        raise NotImplementedError

    def answer_rows(self, examples: ExampleSet, targets: Targets | None, prompts: Sequence[BuiltPrompt],
                    style: PromptStyle) -> list[dict[str, Any]]:
        raise NotImplementedError

    def gold(self, examples: ExampleSet, targets: Targets, prompts: Sequence[BuiltPrompt], style: PromptStyle) -> list[str]:
        """The right reply of each example (the assistant's whole turn, forced prefix included)."""
        raise NotImplementedError

    def rejected(self, examples: ExampleSet, targets: Targets, prompts: Sequence[BuiltPrompt], style: PromptStyle,
                 rng: np.random.Generator) -> list[str | None]:
        """A wrong reply per example, in the gold reply's format (DPO's rejected side); None: no pair."""
        raise NotImplementedError

    def predictions(self, examples: ExampleSet, prompts: Sequence[BuiltPrompt], replies: Sequence[str],
                    style: PromptStyle) -> Predictions:
        raise NotImplementedError

    def ranked_items(self, examples: ExampleSet, predictions: Predictions) -> np.ndarray:
        """``(n, K)`` item or candidate codes of predictions, as the task's metrics read them."""
        return predictions.items

    def outcome_extras(self, examples: ExampleSet) -> dict[str, np.ndarray]:
        """Per-example arrays the selection metric needs (e.g. ``propensity`` for IPS)."""
        return {}


# --- choosing among candidates ----------------------------------------------------------------


def _choice_of(text: str, row: dict[str, Any]) -> tuple[Choice, bool, bool]:
    """The option a reply names, whether it kept the answer format, and whether its answer sits where the
    format puts it (after "Prediction:", inside the answer tag)."""
    output, options = row["output"], row["options"]
    if output == "text":
        return choose_by_ngrams(text, options), True, True
    if output == "reason":  # only what follows the last "Prediction:" is the answer
        _, found, answer = text.rpartition(PREDICTION)
        return choose_by_ngrams(answer if found else "", options), bool(found), bool(found)
    content, tagged = answer_content(text)
    placed = tagged
    if output == "think":
        tagged = tagged and "</think>" in text
    return choose_by_number(content, len(options)), tagged, placed


def read_choice(text: str, row: dict[str, Any]) -> Reading:
    choice, formatted, placed = _choice_of(text, row)
    others = [i for i in range(len(row["options"])) if i != choice.index]
    ranked = ([choice.index] if choice.valid else []) + others
    answered = placed and choice.valid and choice.status == OK
    return Reading(tuple(ranked), choice.status, choice.valid, choice.detail, formatted, answered)


class CandidateChoice(TaskInterface):
    """Candidate tasks: the model names one option; it goes first, the others keep their order."""

    answer_kind = "choice"
    default_verbalizer = "template"
    selection_metric = "recall@1"
    candidates_are_items: ClassVar[bool] = True

    def option_prompt(self, examples: ExampleSet, row: int, codes: np.ndarray, style: PromptStyle) -> BuiltPrompt:
        raise NotImplementedError

    def prompts(self, examples: ExampleSet, style: PromptStyle) -> list[BuiltPrompt]:
        out = []
        for row in range(len(examples)):
            codes = examples.candidates[row]
            out.append(self.option_prompt(examples, row, codes[codes >= 0], style))
        return out

    def answer_positions(self, examples: ExampleSet, targets: Targets) -> list[list[int]]:
        out = []
        for row in range(len(examples)):
            gold = set(targets.items_of(row).tolist())
            out.append([i for i, c in enumerate(examples.candidates[row].tolist()) if c >= 0 and c in gold])
        return out

    def answer_rows(self, examples, targets, prompts, style):
        n_options = (examples.candidates >= 0).sum(axis=1)
        gold = self.answer_positions(examples, targets) if targets is not None else [[] for _ in prompts]
        return [{"reader": "choice", "output": style.output, "options": list(p.options), "gold": g,
                 "propensity": 1.0 / int(m)} for p, g, m in zip(prompts, gold, n_options)]

    def gold(self, examples, targets, prompts, style):
        if style.output == "reason":
            raise ConfigError("a reasoned gold answer needs a teacher (sft_reason); output=reason has no gold text of its own")
        out = []
        for prompt, positions in zip(prompts, self.answer_positions(examples, targets)):
            if not positions:
                raise ConfigError("an example's target is not among its candidates, so it has no gold answer")
            answer = prompt.continuations[positions[0]]
            if style.output == "think":  # no reasoning to imitate: an empty thought, then the answer
                answer = f"</think><answer>{answer}"
            out.append(prompt.forced_prefix + answer)
        return out

    def outcome_extras(self, examples: ExampleSet) -> dict[str, np.ndarray]:
        return {"propensity": 1.0 / np.maximum(1, (examples.candidates >= 0).sum(axis=1))}

    def rejected(self, examples, targets, prompts, style, rng):
        """Another option of the same candidates, drawn uniformly."""
        out: list[str | None] = []
        for prompt, positions in zip(prompts, self.answer_positions(examples, targets)):
            others = [i for i in range(len(prompt.options)) if i not in positions]
            if not others:
                out.append(None)
                continue
            answer = prompt.continuations[others[int(rng.integers(len(others)))]]
            out.append(prompt.forced_prefix + (f"</think><answer>{answer}" if style.output == "think" else answer))
        return out

    def predictions(self, examples, prompts, replies, style):
        rows = self.answer_rows(examples, None, prompts, style)
        readings = [read_choice(text, row) for text, row in zip(replies, rows)]
        items = np.full_like(examples.candidates, -1)
        extras = []
        for row, (prompt, reading, text) in enumerate(zip(prompts, readings, replies)):
            order = np.asarray(reading.ranked, dtype=np.int64)
            items[row, : len(order)] = examples.candidates[row][order]
            extras.append({"history_shown": prompt.history_shown, "history_dropped": prompt.history_dropped,
                           "llm_output": text, "choice": reading.ranked[0] + 1 if reading.valid else None,
                           "choice_status": reading.status, "choice_detail": reading.detail})
        n = max(1, len(readings))
        statuses = [r.status for r in readings]
        diagnostics = {
            "valid_output_rate": sum(r.valid for r in readings) / n,
            "out_of_candidate_rate": sum(s in (NO_MATCH, OUT_OF_RANGE) for s in statuses) / n,
            "empty_output_rate": statuses.count(EMPTY) / n,
            "ambiguous_rate": statuses.count(AMBIGUOUS) / n,
            **history_diagnostics(prompts),
        }
        if style.output in ("number", "think"):
            diagnostics["answer_tag_missing_rate"] = sum(not r.formatted for r in readings) / n
        if self.candidates_are_items:  # did the model pick an item the user already had?
            chosen = [(row, int(items[row, 0])) for row, r in enumerate(readings) if r.valid]
            copied = sum(item in set(examples.histories.items_of(row).tolist()) for row, item in chosen)
            diagnostics["copied_from_history_rate"] = copied / max(1, len(chosen))
        return Predictions(items=items, extras=extras, diagnostics=diagnostics)


class ItemChoice(CandidateChoice):
    """Which candidate item the user engages with next (the verbalization paper's reasoner prompt)."""

    def option_prompt(self, examples, row, codes, style):
        return rerank_prompt(History.of(examples, row), codes.tolist(), self.items, self.verbalizer(style),
                             output=style.output, budget=style.budget, count_tokens=style.count_tokens)


class ArtworkChoice(CandidateChoice):
    """Which artwork of a new title the user likes most (the artwork paper's prompt); IPS selects."""

    selection_metric = "ips"
    candidates_are_items = False

    def option_prompt(self, examples, row, codes, style):
        table = self.catalog.tables.get("artworks")
        if table is None:
            raise ConfigError(
                f"the task's candidates are rows of the 'artworks' table, but catalog {self.catalog.name!r} has none "
                f"(it has {sorted(self.catalog.tables) or 'no side tables'}); use a dataset with artwork captions."
            )
        captions = table["caption"].to_numpy(dtype=object)[codes].tolist()
        title = self.items.titles[int(examples.attributes["title_item"].iloc[row])]
        return artwork_prompt(History.of(examples, row), title, captions, self.verbalizer(style),
                              output=style.output, budget=style.budget, count_tokens=style.count_tokens)


class TitleChoice(CandidateChoice):
    """Candidates as ``genre: title`` lines, history as a short list of the same (small prompts, a task small models learn)."""

    default_verbalizer = "titles"

    def option_prompt(self, examples, row, codes, style):
        history = self.verbalizer(style).render(History.of(examples, row))
        options = [self.items.genres_first(int(c)) for c in codes]
        intro = "Predict which of the candidate movies the user will watch next, based on the movies they watched."
        return choice_prompt(intro, history, len(examples.histories.items_of(row)), "", options, "movie", style.output)


# --- generating a list of titles ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _matcher(catalog_file: str):
    import pandas as pd

    from recbench.grounding import TitleMatcher

    return TitleMatcher(pd.read_json(catalog_file, orient="records"))


def read_titles(text: str, row: dict[str, Any]) -> Reading:
    """Titles of a reply grounded to catalog items (rapidfuzz WRatio), duplicates and misses dropped."""
    parsed = parse_title_list(text)
    matcher = _matcher(row["catalog"])
    ranked: list[int] = []
    for title in parsed.titles:
        item, _ = matcher.match(title, row["threshold"])
        if item >= 0 and item not in ranked:
            ranked.append(item)
    ranked = ranked[: row["k"]]
    return Reading(tuple(ranked), "ok" if ranked else NO_MATCH, bool(ranked), parsed.format, parsed.format != "none")


class TitleList(TaskInterface):
    """Generation tasks: the model lists ``k`` titles (the RLHF top-k paper's prompt); NDCG@k selects."""

    answer_kind = "titles"
    default_verbalizer = "preferences"
    selection_metric = "ndcg@5"

    @property
    def k(self) -> int:
        return int(getattr(self.params, "k", 5))

    def prompts(self, examples, style):
        attributes = examples.attributes
        cutoffs = (attributes["release_cutoff"].tolist() if attributes is not None and "release_cutoff" in attributes
                   else [None] * len(examples))
        verbalizer = self.verbalizer(style)
        return [topk_prompt(History.of(examples, row), self.users[int(examples.users[row])], cutoffs[row], self.k,
                            self.catalog.name, verbalizer, budget=style.budget, count_tokens=style.count_tokens)
                for row in range(len(examples))]

    def catalog_file(self) -> str:
        """The catalog's titles as a JSON file (content-named) that readers in any process load once."""
        from recbench.data.store import recbench_home
        from recbench.hashing import stable_hash

        records = self.catalog.items[["title", "year"]].astype(object).where(self.catalog.items[["title", "year"]].notna(), None)
        payload = json.dumps(records.to_dict("records"), sort_keys=True)
        path = recbench_home() / "llm-catalogs" / f"{stable_hash(payload, 16)}.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(payload)
            tmp.replace(path)
        return str(path)

    def answer_rows(self, examples, targets, prompts, style):
        catalog = self.catalog_file()
        threshold = float(getattr(self.params, "match_threshold", 80.0))
        return [{"reader": "titles", "catalog": catalog, "threshold": threshold, "k": self.k,
                 "gold": [] if targets is None else targets.items_of(row).tolist()} for row in range(len(prompts))]

    def gold(self, examples, targets, prompts, style):
        """The next ``k`` titles as a Python list in single quotes (the prompt's format and forced prefix ``['``)."""
        out = []
        for row in range(len(targets)):
            titles = [self.items.titles[int(i)] for i in targets.items_of(row)[: self.k]]
            if not titles:
                raise ConfigError("an example has no target items, so it has no gold list")
            quoted = ("'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'" for t in titles)
            out.append("[" + ", ".join(quoted) + "]")
        return out

    def rejected(self, examples, targets, prompts, style, rng):
        """Another example's gold list: the right format, the wrong user."""
        gold = self.gold(examples, targets, prompts, style)
        if len(gold) < 2:
            return [None] * len(gold)
        order = rng.permutation(len(gold))
        shifted = np.empty(len(gold), dtype=np.int64)
        shifted[order] = np.roll(order, 1)  # a derangement: nobody gets their own list
        return [gold[j] if gold[j] != gold[i] else None for i, j in enumerate(shifted)]

    def predictions(self, examples, prompts, replies, style):
        texts, extras, unparsed = [], [], 0
        for prompt, said in zip(prompts, replies):
            parsed = parse_title_list(said)
            unparsed += parsed.format == "none"
            texts.append(parsed.titles)
            extras.append({"llm_output": said, "list_format": parsed.format,
                           "history_shown": prompt.history_shown, "history_dropped": prompt.history_dropped})
        diagnostics = {"unparsed_output_rate": unparsed / max(1, len(prompts)), **history_diagnostics(prompts)}
        return Predictions(texts=texts, extras=extras, diagnostics=diagnostics)

    def ranked_items(self, examples, predictions):
        from recbench.grounding import ground_titles

        return ground_titles(predictions.texts, self.catalog.items, examples, k=self.k,
                             threshold=float(getattr(self.params, "match_threshold", 80.0))).items


READERS: dict[str, Callable[[str, dict[str, Any]], Reading]] = {"choice": read_choice, "titles": read_titles}


def read_reply(text: str, row: dict[str, Any]) -> Reading:
    """Read ``text`` with the reader its row names (``choice`` or ``titles``)."""
    return READERS[row["reader"]](text, row)


def history_diagnostics(prompts: Sequence[BuiltPrompt]) -> dict[str, float]:
    n = max(1, len(prompts))
    return {"avg_history_shown": sum(p.history_shown for p in prompts) / n,
            "truncated_history_rate": sum(p.history_dropped > 0 for p in prompts) / n}
