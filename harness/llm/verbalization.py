"""Learned verbalization (the verbalization paper): an LLM turns the template log into the reasoner's history.

A :class:`ModelVerbalizer` is a verbalizer (:mod:`recbench.llm.verbalizers`) backed by a model.
It is given the template verbalization of the most recent interactions that fit the history
budget (the *source*), asks its model for one of three outputs, and hands the reasoner the result:

- ``zero_shot``: a prompted rewrite that states the paper's heuristics (drop IDs and clock times,
  group, name genres, summarise the taste); no training;
- ``rewrite``: a free rewrite of the whole history (the paper's main verbalizer, trained by GRPO);
- ``action``: per interaction a keep/drop and an enrich decision in the fixed format
  ``time, ID, keep, enrich`` (the paper's equation 2), executed deterministically by
  :func:`execute_actions`: kept interactions with enrich = 1 get the item's genres. An
  interaction without a readable decision is kept unenriched, and counted (``action_fallbacks``).

Verbalizations are greedy, so one (verbalizer weights, source) pair has one verbalization: the
backend's :class:`~recbench.llm.cache.CachedBackend` stores it under the weights' fingerprint and
the prompt (which holds the example's source), and a verbalizer keeps the ones it made in memory.
A verbalization longer than the reasoner's history budget is cut to it (:func:`truncate_to_budget`)
and counted (``truncated``), never passed on whole. The compression ratio is the verbalization's
length over its source's, in characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recbench.examples import CatalogView
from recbench.llm.backend import DecodingParams
from recbench.llm.prompts import FittedHistory, fit_history
from recbench.llm.verbalizers import History, TemplateVerbalizer

MODES = ("zero_shot", "rewrite", "action")
SLOT = "<<VERBALIZED HISTORY>>"  # where a reward puts a sampled verbalization into the reasoner's prompt
SYSTEM = "You turn a user's raw interaction log into text that a movie recommender reads."
INSTRUCTIONS = {
    "zero_shot": (
        "Rewrite the interaction log below as short natural language for a recommender. Drop IDs and clock times, "
        "group similar movies, name their genres, say which ones the user rated high or low, and end with one "
        "sentence that sums up the user's taste."
    ),
    "rewrite": (
        "Rewrite the interaction log below into natural language that helps predict which movie the user will "
        "watch next. Keep the important signals and remove noise."
    ),
    "action": (
        "For each interaction below decide whether to keep it (1) or drop it (0), and whether to add the movie's "
        "genres (1) or not (0). Answer with one line per interaction, in the format: time, ID, keep, enrich\n"
        "For example: 19971120 3 PM, ID: 242, 1, 0"
    ),
}
_ACTION_LINE = re.compile(r"ID:?\s*([^,\s]+)\s*,.*?\b([01])\s*,\s*([01])\b")


@dataclass(frozen=True)
class Interaction:
    """One interaction of a source: its item's original id, its template row and its metadata."""

    id: str
    row: str
    metadata: str


@dataclass(frozen=True)
class Source:
    """What a verbalizer rewrites: the template text of the interactions that fit the budget."""

    text: str
    shown: int
    dropped: int
    interactions: tuple[Interaction, ...]


@dataclass(frozen=True)
class Verbalization:
    text: str
    source_chars: int
    shown: int
    dropped: int
    truncated: bool = False
    fallbacks: int = 0  # action mode: interactions kept because no decision could be read

    @property
    def compression(self) -> float:
        return len(self.text) / max(1, self.source_chars)


def execute_actions(reply: str, interactions: Sequence[Interaction], header: str = TemplateVerbalizer.HEADER
                    ) -> tuple[str, int]:
    """The action output executed: kept rows, enriched where asked, and how many rows fell back to keep."""
    decisions: dict[str, list[tuple[bool, bool]]] = {}
    for line in reply.splitlines():
        match = _ACTION_LINE.search(line)
        if match:
            decisions.setdefault(match.group(1), []).append((match.group(2) == "1", match.group(3) == "1"))
    rows, fallbacks = [], 0
    for interaction in interactions:
        queue = decisions.get(interaction.id)
        if queue:  # a repeated ID takes its decisions in order
            keep, enrich = queue.pop(0)
        else:
            keep, enrich = True, False
            fallbacks += 1
        if keep:
            rows.append(f"{interaction.row}, {interaction.metadata}" if enrich and interaction.metadata else interaction.row)
    return "\n".join([header, *rows]), fallbacks


def realise(reply: str, row: dict[str, Any]) -> tuple[str, int]:
    """A verbalizer's raw reply as the text the reasoner reads (actions executed), and its fallbacks."""
    if row.get("verbalizer") == "action":
        return execute_actions(reply, [Interaction(*i) for i in row["interactions"]])
    return reply.strip(), 0


def truncate_to_budget(text: str, budget: int, count_tokens: Callable[[str], int]) -> tuple[str, bool]:
    """``text`` cut at a word boundary to at most ``budget`` tokens, and whether it was cut."""
    if count_tokens(text) <= budget:
        return text, False
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    low, high = 0, len(ends)  # keeping `low` words fits
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(text[: ends[mid - 1]]) <= budget:
            low = mid
        else:
            high = mid - 1
    return (text[: ends[low - 1]] if low else ""), True


def verbalizer_messages(mode: str, source: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{INSTRUCTIONS[mode]}\n\n{source}"}]


class SlotVerbalizer:
    """Stands in for a verbalization not yet sampled: the reasoner prompt gets :data:`SLOT` (training rows)."""

    def fit(self, history: History, budget: int, count_tokens: Callable[[str], int]) -> FittedHistory:
        return FittedHistory(SLOT, len(history), 0)

    def render(self, history: History) -> str:
        return SLOT


class ModelVerbalizer:
    """A verbalizer backed by a model (see the module docstring); ``bind`` a trained checkpoint's backend."""

    def __init__(self, catalog: CatalogView, mode: str = "rewrite", *, model: str = "smollm2-135m",
                 max_new_tokens: int = 64, load: Callable[[str], Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"verbalizer mode must be one of {MODES}, got {mode!r}")
        self.template = TemplateVerbalizer(catalog)
        self.mode, self.model, self.max_new_tokens = mode, model, max_new_tokens
        self._load = load
        self.backend: Any = None
        self.memo: dict[tuple[str, int], Verbalization] = {}
        self.stats = {"verbalizations": 0, "truncated": 0, "action_interactions": 0, "action_fallbacks": 0}

    def bind(self, backend: Any) -> None:
        """Verbalize with ``backend`` (a trained checkpoint) from now on."""
        self.backend = backend
        self.memo.clear()

    @property
    def fingerprint(self) -> str:
        return f"{self.mode}:{self._backend().fingerprint}"

    def _backend(self) -> Any:
        if self.backend is None:
            if self._load is None:
                from recbench.llm.models import load_backend

                self._load = load_backend
            self.backend = self._load(self.model)
        return self.backend

    def source(self, history: History, budget: int, count_tokens: Callable[[str], int]) -> Source:
        """The template rows of the most recent interactions that fit ``budget``."""
        fitted = fit_history(self.template, history, budget, count_tokens)
        shown = history.last(fitted.shown)
        text = self.template.text
        interactions = tuple(
            Interaction(text.ids[int(i)], self.template.row(int(i), int(t), float(r)),
                        f"genres: {text.genres[int(i)]}" if text.genres[int(i)] else "")
            for i, t, r in zip(shown.items, shown.timestamps, shown.ratings))
        return Source(fitted.text, fitted.shown, fitted.dropped, interactions)

    def decoding(self) -> DecodingParams:
        return DecodingParams(max_new_tokens=self.max_new_tokens, temperature=0.0)

    def prepare(self, histories: Sequence[History], budget: int, count_tokens: Callable[[str], int]) -> list[Verbalization]:
        """Verbalize ``histories`` in one batch (those not verbalized before); truncations and fallbacks counted."""
        sources = [self.source(h, budget, count_tokens) for h in histories]
        todo = list({s.text: s for s in sources if (s.text, budget) not in self.memo}.values())
        if todo:
            replies = self._backend().generate([verbalizer_messages(self.mode, s.text) for s in todo], self.decoding())
            for source, generations in zip(todo, replies):
                row = {"verbalizer": self.mode, "interactions": [(i.id, i.row, i.metadata) for i in source.interactions]}
                text, fallbacks = realise(generations[0].text, row)
                text, cut = truncate_to_budget(text, budget, count_tokens)
                self.memo[(source.text, budget)] = Verbalization(text, len(source.text), source.shown, source.dropped,
                                                                 cut, fallbacks)
                self.stats["verbalizations"] += 1
                self.stats["truncated"] += int(cut)
                if self.mode == "action":
                    self.stats["action_interactions"] += len(source.interactions)
                    self.stats["action_fallbacks"] += fallbacks
        return [self.memo[(s.text, budget)] for s in sources]

    # --- the Verbalizer protocol (prompt builders call ``fit`` when a verbalizer has it) ---------

    def fit(self, history: History, budget: int, count_tokens: Callable[[str], int]) -> FittedHistory:
        done = self.prepare([history], budget, count_tokens)[0]
        return FittedHistory(done.text, done.shown, done.dropped)

    def render(self, history: History) -> str:
        return self.fit(history, 10**9, lambda text: len(text.split())).text


_REGISTERED: dict[tuple[str, int], ModelVerbalizer] = {}


def registered(mode: str) -> Callable[[CatalogView], ModelVerbalizer]:
    """The factory the verbalizer registry holds for ``mode``: one instance (and model) per catalog."""

    def factory(catalog: CatalogView) -> ModelVerbalizer:
        key = (mode, id(catalog))
        if key not in _REGISTERED:
            _REGISTERED[key] = ModelVerbalizer(catalog, mode, load=_cached_load)
        return _REGISTERED[key]

    return factory


def _cached_load(model: str) -> Any:
    from recbench.data.store import recbench_home
    from recbench.llm.cache import CachedBackend
    from recbench.llm.models import load_backend

    return CachedBackend(load_backend(model), recbench_home() / "llm-cache" / "llm.sqlite")
