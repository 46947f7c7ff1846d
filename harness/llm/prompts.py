"""Chat prompts for each task kind, with the user's history cut to a token budget.

- :func:`rerank_prompt`: pick the next item among candidates (verbalization paper's reasoner).
- :func:`artwork_prompt`: pick the artwork a user prefers for a new title (artwork paper):
  options delimited by ``<option> ... </option>``; ``output="text"`` asks for the caption with
  the forced prefix ``Prediction: <option>``, ``output="number"`` for its number, ``output="reason"``
  for a justification first (``Reason: ... Prediction: <option> caption </option>``, the output of
  the paper's SFT with distilled reasoning).
- :func:`topk_prompt`: generate ``k`` titles (RLHF top-k paper): demographics, history,
  a release-date cutoff and a list-of-strings output format.

A history is truncated by dropping its oldest interactions until the verbalized text fits
``budget`` tokens as counted by ``count_tokens`` (the backend's tokenizer, or
:func:`whitespace_tokens`); every prompt records how many interactions were shown and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import pandas as pd

from recbench.llm.backend import Prompt
from recbench.llm.verbalizers import History, ItemText, Verbalizer

TokenCounter = Callable[[str], int]
Output = Literal["text", "number", "reason", "think"]

EXPERT = "You are an expert in movies and shows."  # the artwork paper's opening line
RECOMMENDER = "You are a movie recommender. You answer exactly in the format the user asks for."
TEXT_PREFIX = "Prediction: <option>"  # the artwork paper's forced prefix for caption output
REASON_PREFIX = "Reason:"  # answers with reasoning start so; the prediction follows after PREDICTION
PREDICTION = "Prediction:"
NUMBER_PREFIX = "<answer>"
THINK_PREFIX = "<think>"
PARAGRAPH = "\n\n"  # small models answer, then ramble on in a new paragraph: stop there


def whitespace_tokens(text: str) -> int:
    """A tokenizer-free approximation: the number of whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True)
class FittedHistory:
    text: str
    shown: int
    dropped: int


def fit_history(verbalizer: Verbalizer, history: History, budget: int, count_tokens: TokenCounter) -> FittedHistory:
    """The most recent interactions whose verbalization fits ``budget`` tokens (binary search on how many).

    A verbalizer with a ``fit`` method of this signature (a model verbalizer) fits the budget itself."""
    own_fit = getattr(verbalizer, "fit", None)
    if own_fit is not None:
        return own_fit(history, budget, count_tokens)
    low, high = 0, len(history)  # invariant: keeping `low` fits; more than `high` does not
    if count_tokens(verbalizer.render(history)) <= budget:
        low = high
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(verbalizer.render(history.last(mid))) <= budget:
            low = mid
        else:
            high = mid - 1
    return FittedHistory(verbalizer.render(history.last(low)), low, len(history) - low)


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt plus what decoding and parsing need to know about it.

    ``options``: the text of each option in prompt order (choice prompts; empty for lists).
    ``continuations``: per option, what ``mode="score"`` compares after ``forced_prefix``.
    ``stop``: where generation may stop (the closing tag of the answer).
    """

    messages: Prompt
    forced_prefix: str
    stop: tuple[str, ...]
    history_shown: int
    history_dropped: int
    options: tuple[str, ...] = ()
    continuations: tuple[str, ...] = ()


def choice_prompt(
    intro: str, history_text: str, shown: int, context: str, options: Sequence[str], what: str, output: Output,
    dropped: int = 0,
) -> BuiltPrompt:
    """A prompt that lists ``options`` and asks for the best one in the ``output`` format.

    ``think`` asks for a justification inside ``<think></think>``, then the option's number inside
    ``<answer></answer>`` (the format the GRPO recipes of the CURec and verbalization papers reward).
    """
    if output in ("text", "reason"):
        listed = "\n".join(f"<option> {text} </option>" for text in options)
        instruction = f"Output the best {what} in text."
        prefix, stop = TEXT_PREFIX, ("</option>", PARAGRAPH)
        continuations = tuple(f" {text} </option>" for text in options)
        if output == "reason":
            instruction = (
                f"First explain, after 'Reason:', which {what} suits the user's taste and why; then output the best "
                f"{what} in text after 'Prediction:'."
            )
            prefix, stop = REASON_PREFIX, ("</option>",)  # a justification may run over several paragraphs
    else:
        listed = "\n".join(f"{i}. <option> {text} </option>" for i, text in enumerate(options, 1))
        instruction = (
            # "<answer>N</answer>", not a concrete number: an example number would prime small models towards it
            f"Output the number of the best {what}, between 1 and {len(options)}, inside <answer></answer> tags: "
            "<answer>N</answer> for option N."
        )
        prefix, stop = NUMBER_PREFIX, ("</answer>", PARAGRAPH)
        if output == "think":
            instruction = (f"Think briefly inside <think></think> tags about which {what} suits the user, then "
                           f"output the number of the best {what}, between 1 and {len(options)}, inside "
                           "<answer></answer> tags: <think>...</think><answer>N</answer>.")
            prefix, stop = THINK_PREFIX, ("</answer>",)
        continuations = tuple(f"{i}</answer>" for i in range(1, len(options) + 1))
    user = f"{intro}\n\n{history_text}\n\n{context}Here are the {what} options:\n{listed}\n\n{instruction}"
    return BuiltPrompt(
        [{"role": "system", "content": EXPERT}, {"role": "user", "content": user}],
        prefix, stop, shown, dropped, tuple(options), continuations,
    )


def _choice_prompt(
    intro: str, history: FittedHistory, context: str, options: Sequence[str], what: str, output: Output
) -> BuiltPrompt:
    return choice_prompt(intro, history.text, history.shown, context, options, what, output, history.dropped)


def rerank_prompt(
    history: History, candidates: Sequence[int], items: ItemText, verbalizer: Verbalizer, *,
    output: Output, budget: int, count_tokens: TokenCounter,
) -> BuiltPrompt:
    """Which of ``candidates`` (item codes, no padding) the user engages with next."""
    fitted = fit_history(verbalizer, history, budget, count_tokens)
    options = [f"ID: {items.ids[c]}, {items.with_genres(c)}" for c in candidates]
    intro = "I want you to predict which of the candidate movies the user will watch next, based on their past interactions."
    return _choice_prompt(intro, fitted, "", options, "movie", output)


def artwork_prompt(
    history: History, title: str, captions: Sequence[str], verbalizer: Verbalizer, *,
    output: Output, budget: int, count_tokens: TokenCounter,
) -> BuiltPrompt:
    """Which artwork of the new ``title`` (one caption per option) the user would like most."""
    fitted = fit_history(verbalizer, history, budget, count_tokens)
    intro = (
        "I want you to predict which of the available artworks the user would like the most "
        "based on their past watch history."
    )
    return _choice_prompt(intro, fitted, f"The user's new title is: {title}.\n", captions, "artwork", output)


def demographics(user: Mapping[str, Any]) -> str:
    """``"I am a male, aged 25, working as executive, from ZIP code 90210."``; unknown fields are left out."""
    known = {k: v for k, v in user.items() if v is not None and not (isinstance(v, float) and pd.isna(v)) and str(v) != ""}
    parts = []
    gender = {"M": "male", "F": "female"}.get(str(known.get("gender", "")).upper())
    if gender:
        parts.append(f"a {gender}")
    if "age" in known:
        parts.append(f"aged {int(known['age'])}")
    if "occupation" in known:
        parts.append(f"working as {known['occupation']}")
    if "zip_code" in known:
        parts.append(f"from ZIP code {known['zip_code']}")
    return f"I am {', '.join(parts)}." if parts else ""


def long_date(iso: str) -> str:
    """``"1998-04-22"`` -> ``"April 22, 1998"``."""
    day = date.fromisoformat(str(iso)[:10])
    return f"{day:%B} {day.day}, {day.year}"


def topk_prompt(
    history: History, user: Mapping[str, Any], release_cutoff: str | None, k: int, dataset: str,
    verbalizer: Verbalizer, *, budget: int, count_tokens: TokenCounter,
) -> BuiltPrompt:
    """Recommend ``k`` titles as a list of strings (the RLHF top-k paper's prompt)."""
    fitted = fit_history(verbalizer, history, budget, count_tokens)
    cutoff = (
        f"Please provide recommendations for movies released before {long_date(release_cutoff)}, based on my history.\n"
        if release_cutoff else ""
    )
    profile = demographics(user)
    user_text = (
        f"{profile + chr(10) if profile else ''}{fitted.text}\n{cutoff}"
        f"Based on my profile, recommend the top {k} movies I am most likely to watch next. "
        "Please provide the output in a list of strings format, containing only the movie titles. "
        "Make sure to strictly adhere to the output format given below. "
        "Strictly do not generate any additional information other than the movie names.\n"
        "Format: ['movie_name', 'movie_name', ... 'movie_name']\n"
        f"Make sure to limit the recommendations to movies available in the {dataset} dataset."
    )
    return BuiltPrompt(
        [{"role": "system", "content": RECOMMENDER}, {"role": "user", "content": user_text}],
        "['", ("]", PARAGRAPH), fitted.shown, fitted.dropped,
    )
