"""Reading an LLM's answer: which option it chose, or which titles it listed.

- :func:`choose_by_ngrams`: the artwork paper's rule for text output; the option whose word
  n-grams (n = 1..3) overlap the output most wins, ties go to the lowest option (recorded).
- :func:`choose_by_number`: ``"3"``, ``"Option 3"``, ``"#3"``; a number out of range is invalid.
- :func:`answer_content`: the text inside ``<answer>...</answer>`` (a missing tag is recorded).
- :func:`parse_title_list`: titles from a Python or JSON list, a quoted list cut short by the
  token limit, or numbered / bulleted lines. Grounding them to catalog items is
  :func:`recbench.grounding.ground_titles`' job (the generation contract calls it).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

OK, AMBIGUOUS, EMPTY, NO_MATCH, OUT_OF_RANGE = "ok", "ambiguous", "empty", "no_match", "out_of_range"
VALID_STATUSES = (OK, AMBIGUOUS)


@dataclass(frozen=True)
class Choice:
    """``index``: the chosen option (0-based) or ``None``; ``status``: one of ok, ambiguous (several
    options named equally; the lowest kept), empty, no_match, out_of_range."""

    index: int | None
    status: str
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.status in VALID_STATUSES


def answer_content(text: str, tag: str = "answer") -> tuple[str, bool]:
    """The content of the first ``<tag>`` up to its closing tag (or, unclosed, to the end of its first line),
    and whether the tag was there; without the tag, the whole text."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    if match:
        return match.group(1).strip(), True
    opened = re.search(rf"<{tag}>\s*(.*)", text, flags=re.IGNORECASE)
    return (opened.group(1).strip(), True) if opened else (text.strip(), False)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(text: str, option: str, max_n: int = 3) -> float:
    """Mean over n = 1..max_n of the share of the option's word n-grams that appear in ``text``."""
    said, named = _words(text), _words(option)
    shares = []
    for n in range(1, max_n + 1):
        grams = _ngrams(named, n)
        if grams:
            shares.append(len(grams & _ngrams(said, n)) / len(grams))
    return sum(shares) / len(shares) if shares else 0.0


def _tie(best: list[int], label: str) -> Choice:
    if len(best) == 1:
        return Choice(best[0], OK)
    # the artwork paper breaks ties towards the lowest option; keep the fact that it was a tie
    return Choice(best[0], AMBIGUOUS, f"{label} {', '.join(str(i + 1) for i in best)}")


def choose_by_ngrams(text: str, options: Sequence[str], max_n: int = 3) -> Choice:
    """The option with the highest n-gram overlap with ``text`` (tags like ``<option>`` ignored)."""
    cleaned = re.sub(r"</?option>|^\s*prediction\s*:", " ", text, flags=re.IGNORECASE)
    if not _words(cleaned):
        return Choice(None, EMPTY)
    scores = [round(ngram_overlap(cleaned, option, max_n), 9) for option in options]
    top = max(scores, default=0.0)
    if top <= 0:
        return Choice(None, NO_MATCH, "no option shares a word with the output")
    return _tie([i for i, s in enumerate(scores) if s == top], "tie between options")


_NUMBER = re.compile(r"(?<![\w.])(\d+)\b")  # whole numbers: "Option 3", "#3", "3."; not "abc3" or "2.5"


def choose_by_number(text: str, n_options: int) -> Choice:
    """The option a number names (1-based); several distinct in-range numbers are ambiguous (first kept)."""
    if not text.strip():
        return Choice(None, EMPTY)
    numbers = [int(m.group(1)) for m in _NUMBER.finditer(text)]
    if not numbers:
        return Choice(None, NO_MATCH, "no number in the output")
    in_range = list(dict.fromkeys(n for n in numbers if 1 <= n <= n_options))
    if not in_range:
        return Choice(None, OUT_OF_RANGE, f"{numbers[0]} is not an option number in 1..{n_options}")
    if len(in_range) == 1:
        return Choice(in_range[0] - 1, OK)
    return Choice(in_range[0] - 1, AMBIGUOUS, f"several options named: {', '.join(map(str, in_range))}")


@dataclass(frozen=True)
class TitleList:
    """Parsed titles and the format they were found in: python, quoted, lines or none."""

    titles: list[str]
    format: str


def _clean(title: str) -> str:
    title = title.strip().strip("\"'`").strip().rstrip(",").strip().strip("\"'`").strip()
    # models copy the prompt's "Title (1995) (Comedy, Drama)": the genres after the year are not the title
    return re.sub(r"(\(\d{4}\))\s*\([^()\d]*\)$", r"\1", title)


def _bracketed(text: str) -> str | None:
    start = text.find("[")
    if start < 0:
        return None
    stop = text.find("]", start)
    return text[start : stop + 1] if stop >= 0 else text[start:]


def parse_title_list(text: str) -> TitleList:
    """Titles from a generated list; see the module docstring for the accepted formats."""
    span = _bracketed(text)
    if span is not None:
        for loads in (ast.literal_eval, json.loads):
            try:
                value = loads(span)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, list):
                titles = [t for t in (_clean(str(v)) for v in value) if t]
                return TitleList(titles, "python" if titles else "none")
        inner = span[1:].rstrip("]")
        if re.search(r"['\"]", inner):
            # split between quotes, not on every comma: titles like "Godfather, The (1972)" hold commas
            parts = re.split(r"['\"]\s*,\s*['\"]", inner)
        else:
            parts = inner.split(",")
        titles = [t for t in map(_clean, parts) if t]
        if titles:
            return TitleList(titles, "quoted")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    marked = [m.group(1) for m in (re.match(r"^(?:\d+[.)]|[-*\u2022])\s+(.+)$", line) for line in lines) if m]
    titles = [t for t in map(_clean, marked or lines) if t]
    return TitleList(titles, "lines" if titles else "none")
