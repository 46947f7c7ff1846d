"""Grounding generated titles to catalog items with rapidfuzz WRatio (the RLHF top-k paper's mapping).

A generated title maps to the catalog item whose display title ("Title (year)") scores highest
under ``fuzz.WRatio``, if that score reaches ``threshold`` (0-100). Titles below the threshold
count as hallucinated; a title grounded to an item already predicted for the example counts as
a duplicate. Both leave a ``-1`` slot, so a method is never credited for them.

WRatio scores a short query by its best partial match, so a fragment such as "the" or "1" (or
"The (1997)", which matches on its year) would reach 90 against many titles. A query whose title
part (the text before a trailing "(year)") has fewer than ``MIN_QUERY_CHARS`` letters and digits,
or is made only of stop words, is therefore grounded only when it equals a catalog title exactly:
"M (1931)" is, "The (1997)" is not, and real titles as short as "Heat" still match fuzzily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recbench.examples import ExampleSet

MIN_QUERY_CHARS = 4
STOP_WORDS = frozenset({"a", "an", "the", "and", "of", "in", "on", "movie", "movies", "film", "films", "none", "title"})
TRAILING_YEAR = re.compile(r"\(\s*\d{4}\s*\)\s*$")


def _too_vague(title_part: str) -> bool:
    return sum(ch.isalnum() for ch in title_part) < MIN_QUERY_CHARS or set(title_part.split()) <= STOP_WORDS


def display_titles(items: pd.DataFrame) -> list[str]:
    """``"Title (year)"`` per item, or the bare title when the year is unknown or already in it."""
    out = []
    for title, year in zip(items["title"].astype(str), items["year"]):
        if pd.isna(year) or f"({int(year)})" in title:
            out.append(title)
        else:
            out.append(f"{title} ({int(year)})")
    return out


@dataclass(frozen=True)
class Grounded:
    items: np.ndarray
    diagnostics: dict[str, float]
    extras: list[dict[str, Any]]


class TitleMatcher:
    """Caches the processed catalog titles so that many lookups share the preprocessing."""

    def __init__(self, items: pd.DataFrame) -> None:
        from rapidfuzz import utils

        self.titles = display_titles(items)
        self._processed = [utils.default_process(t) for t in self.titles]
        self._exact: dict[str, int] = {}
        for index, processed in enumerate(self._processed):
            self._exact.setdefault(" ".join(processed.split()), index)

    def match(self, text: str, threshold: float) -> tuple[int, float]:
        """``(item code, score)`` of the best match, or ``(-1, best score)`` below ``threshold``."""
        from rapidfuzz import fuzz, process, utils

        query = utils.default_process(text)
        if _too_vague(utils.default_process(TRAILING_YEAR.sub("", text))):
            exact = self._exact.get(" ".join(query.split()))
            return (exact, 100.0) if exact is not None else (-1, 0.0)
        best = process.extractOne(query, self._processed, scorer=fuzz.WRatio, processor=None)
        if best is None:
            return -1, 0.0
        _, score, index = best
        return (int(index), float(score)) if score >= threshold else (-1, float(score))


_MATCHERS: dict[int, TitleMatcher] = {}


def ground_titles(
    texts: list[list[str]], items: pd.DataFrame, examples: ExampleSet, *, k: int, threshold: float
) -> Grounded:
    matcher = _MATCHERS.get(id(items))
    if matcher is None:
        matcher = _MATCHERS[id(items)] = TitleMatcher(items)
    out = np.full((len(texts), k), -1, dtype=np.int64)
    n_titles = n_grounded = n_dup = n_copied = n_valid_rows = 0
    extras = []
    for row, titles in enumerate(texts):
        history = set(examples.histories.items_of(row).tolist())
        chosen: list[int] = []
        detail = []
        titles = [str(t) for t in (titles or [])][:k]
        n_valid_rows += bool(titles)
        for title in titles:
            n_titles += 1
            code, score = matcher.match(title, threshold)
            status = "grounded"
            if code < 0:
                status = "hallucinated"
            elif code in chosen:
                status, code = "duplicate", -1
                n_dup += 1
            else:
                n_grounded += 1
                n_copied += code in history
                chosen.append(code)
            detail.append({"text": title, "item": code, "score": round(score, 1), "status": status})
        out[row, : len(chosen)] = chosen
        extras.append({"generated": detail})
    diagnostics = {
        "valid_output_rate": n_valid_rows / max(1, len(texts)),
        "hallucinated_rate": (n_titles - n_grounded - n_dup) / max(1, n_titles),
        "duplicate_rate": n_dup / max(1, n_titles),
        "copied_from_history_rate": n_copied / max(1, n_grounded),
        "avg_titles_per_example": n_titles / max(1, len(texts)),
    }
    return Grounded(out, diagnostics, extras)
