"""Verbalizers: how a user's interaction history becomes text in a prompt.

A verbalizer is built once per catalog (``factory(catalog)``) and then renders any history,
oldest interaction first, as one block of text. Prompt builders truncate a history by asking for
the text of its most recent ``n`` interactions, so a verbalizer only has to render what it is given.

Built-ins, chosen by name in a method's config:

- ``template``: the verbalization paper's baseline, one dated row per interaction
  (``19971120, Thursday, 3 PM, ID: 242, Kolya (1996), Rated, Rating: 3/5``).
- ``preferences``: the RLHF top-k paper's profile, liked (rating >= 3) and disliked (<= 2)
  titles with their genres as two Python-style lists.
- ``titles``: one ``- genres: Title (year)`` line per interaction, the shortest history.

- ``zero_shot``, ``rewrite``, ``action``: an LLM (SmolLM2-135M unless a method binds a trained
  checkpoint) rewrites the template rows (:mod:`recbench.llm.verbalization`, the verbalization paper).

Register another with :func:`register_verbalizer`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

import numpy as np
import pandas as pd

from recbench.errors import RegistrationError, UnknownNameError
from recbench.examples import CatalogView, ExampleSet
from recbench.grounding import display_titles


@dataclass(frozen=True)
class History:
    """One example's interactions, oldest first (item codes, Unix seconds, ratings or NaN)."""

    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray

    @classmethod
    def of(cls, examples: ExampleSet, row: int) -> History:
        h = examples.histories
        return cls(h.items_of(row), h.timestamps_of(row), h.ratings_of(row))

    def __len__(self) -> int:
        return len(self.items)

    def last(self, n: int) -> History:
        """The ``n`` most recent interactions."""
        start = max(0, len(self) - n)
        return History(self.items[start:], self.timestamps[start:], self.ratings[start:])


class ItemText:
    """Display strings of every catalog item, computed once: title with year, genres, original id."""

    def __init__(self, catalog: CatalogView) -> None:
        items = catalog.items
        self.titles = display_titles(items)
        genres = items["genres"] if "genres" in items else pd.Series([""] * len(items))
        self.genres = [", ".join(g for g in str(v).split("|") if g) if isinstance(v, str) else "" for v in genres]
        self.ids = items["item_id"].astype(str).tolist() if "item_id" in items else [str(i) for i in range(len(items))]

    def with_genres(self, item: int) -> str:
        """``"Kolya (1996) (Comedy)"``, or the bare display title when genres are unknown."""
        genres = self.genres[item]
        return f"{self.titles[item]} ({genres})" if genres else self.titles[item]

    def genres_first(self, item: int) -> str:
        """``"Comedy: Kolya (1996)"``: the genre next to a list's number or bullet, where a small model finds it."""
        genres = self.genres[item]
        return f"{genres}: {self.titles[item]}" if genres else self.titles[item]


class Verbalizer(Protocol):
    """Turns a history (oldest first) into prompt text; built with ``factory(catalog)``."""

    def render(self, history: History) -> str: ...


def _rating(value: float) -> str:
    return f"{value:g}/5"


class TemplateVerbalizer:
    """One row per interaction: date, weekday, time, ID, title, engagement, rating (verbalization paper)."""

    HEADER = "The user's interactions, oldest first (date, weekday, time, ID, title, engagement, rating):"

    def __init__(self, catalog: CatalogView) -> None:
        self.text = ItemText(catalog)

    def row(self, item: int, timestamp: int, rating: float) -> str:
        moment = datetime.fromtimestamp(int(timestamp), tz=timezone.utc)
        hour = f"{moment.hour % 12 or 12} {'AM' if moment.hour < 12 else 'PM'}"
        rated = not np.isnan(rating)
        engagement = f"Rated, Rating: {_rating(rating)}" if rated else "Watched, Rating: none"
        return f"{moment:%Y%m%d}, {moment:%A}, {hour}, ID: {self.text.ids[item]}, {self.text.titles[item]}, {engagement}"

    def render(self, history: History) -> str:
        if not len(history):
            return "The user has no recorded interactions."
        rows = (self.row(int(i), int(t), float(r)) for i, t, r in zip(history.items, history.timestamps, history.ratings))
        return "\n".join([self.HEADER, *rows])


class PreferenceVerbalizer:
    """Liked and disliked titles with genres, as Python-style lists (RLHF top-k paper, Figure 2)."""

    LIKED_AT = 3.0  # the paper: ratings >= 3 liked, <= 2 disliked

    def __init__(self, catalog: CatalogView) -> None:
        self.text = ItemText(catalog)

    def render(self, history: History) -> str:
        liked, disliked, unrated = [], [], []
        for item, rating in zip(history.items.tolist(), history.ratings.tolist()):
            bucket = unrated if np.isnan(rating) else liked if rating >= self.LIKED_AT else disliked
            bucket.append(self.text.with_genres(item))
        lines = []
        if liked:
            lines.append(f"I have previously watched and liked the movies: {liked!r}.")
        if disliked:
            lines.append(f"I have watched and disliked the movies: {disliked!r}.")
        if unrated:
            lines.append(f"I have watched the movies: {unrated!r}.")
        return "\n".join(lines) or "I have not watched any movies yet."


class TitlesVerbalizer:
    """One line per interaction, genres then title: the shortest history (learnability task, small models).

    Genres come first (``- Sci-Fi: Electric Shadow (1981)``), as in the learnability task's options:
    with them at the end of the line, SmolLM2-135M stayed at chance after 150 SFT steps (400 rows).
    """

    def __init__(self, catalog: CatalogView) -> None:
        self.text = ItemText(catalog)

    def render(self, history: History) -> str:
        if not len(history):
            return "The user has not watched anything yet."
        return "The user watched, oldest first:\n" + "\n".join(f"- {self.text.genres_first(int(i))}" for i in history.items)


VerbalizerFactory = Callable[[CatalogView], Verbalizer]

def _model_verbalizer(mode: str) -> VerbalizerFactory:
    def factory(catalog: CatalogView) -> Verbalizer:
        from recbench.llm.verbalization import registered  # imports the model code only when used

        return registered(mode)(catalog)

    return factory


VERBALIZERS: dict[str, VerbalizerFactory] = {
    "template": TemplateVerbalizer,
    "preferences": PreferenceVerbalizer,
    "titles": TitlesVerbalizer,
    **{mode: _model_verbalizer(mode) for mode in ("zero_shot", "rewrite", "action")},
}


def register_verbalizer(name: str, factory: VerbalizerFactory) -> None:
    """Make ``name`` available to every method's ``verbalizer`` option."""
    if name in VERBALIZERS:
        raise RegistrationError(f"verbalizer {name!r} is already registered ({VERBALIZERS[name]!r}); pick another name.")
    VERBALIZERS[name] = factory


def get_verbalizer(name: str, catalog: CatalogView) -> Verbalizer:
    """The verbalizer ``name`` built for ``catalog``; unknown names get a 'did you mean'."""
    factory = VERBALIZERS.get(name)
    if factory is None:
        close = difflib.get_close_matches(name, VERBALIZERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown verbalizer {name!r}.{hint} Registered: {', '.join(sorted(VERBALIZERS))}.")
    return factory(catalog)
