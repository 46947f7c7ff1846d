"""CURec's prompts, reply parsing, alignment examples and chronological windows (no torch here).

The prompts follow the CURec paper's Figure 2 and section 4.3.1: ``prompt_pattern`` asks for the
user's interest pattern from several perspectives (genre, category, director, ...) after a short
reasoning in ``<think></think>``; ``prompt_reason`` asks why the user would favour a target item,
from what the item shares with the user's history; ``prompt_update`` (section 4.4.2) gives the
current pattern and the new item and asks for both an updated pattern and the reason. The
alignment prompt ``prompt_rec`` is the task-agnostic candidate prompt of
:class:`recbench.llm.interface.ItemChoice` with ``output="think"``.

A reply whose tag cannot be found (or holds no word) is kept as its raw text (stripped of the
reasoning and of tags) and counted by the caller (:func:`tagged_text` says which).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from recbench.examples import ExampleSet, Histories, Targets
from recbench.llm.parsing import answer_content

THINK = "<think>"  # every generation starts inside a reasoning block (the forced prefix)
SYSTEM = "You are a recommender system expert who explains users' interests and why they like items."


def _history_lines(texts: Sequence[str], history: np.ndarray) -> str:
    return "\n".join(f"- {texts[int(i)]}" for i in history)


def prompt_pattern(texts: Sequence[str], history: np.ndarray) -> list[dict[str, str]]:
    user = ("Here are the movies a user watched, oldest first:\n" + _history_lines(texts, history) +
            "\n\nAnalyze the user's interests from multiple perspectives, including but not limited to genre, category "
            "and director. Think briefly inside <think></think> tags, then summarize the user's interest pattern in one "
            "or two sentences inside <pattern></pattern> tags: <think>...</think><pattern>...</pattern>.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def prompt_reason(texts: Sequence[str], history: np.ndarray, item: int) -> list[dict[str, str]]:
    user = ("Here are the movies a user watched, oldest first:\n" + _history_lines(texts, history) + "\n\n" +
            f"The user then watched: {texts[int(item)]}\n\nInfer why the user likes this movie: find what it has in "
            "common with the user's interests. Think briefly inside <think></think> tags, then give the recommendation "
            "reason in one sentence inside <reason></reason> tags: <think>...</think><reason>...</reason>.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def prompt_update(texts: Sequence[str], pattern: str, item: int) -> list[dict[str, str]]:
    user = (f"A user's interest pattern: {pattern}\n\nThe user has just watched: {texts[int(item)]}\n\n"
            "Think briefly inside <think></think> tags about what this movie says about the user. Then write the "
            "updated interest pattern inside <pattern></pattern> tags and the reason the user likes this movie inside "
            "<reason></reason> tags: <think>...</think><pattern>...</pattern><reason>...</reason>.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def tagged_text(reply: str, tag: str) -> tuple[str, bool]:
    """The content of ``<tag>`` in ``reply`` and True; else the raw reply (after ``</think>`` if any, tags
    removed) and False. A tag holding no word (the prompt's ``...`` placeholder echoed back, as small
    models do) counts as not found; a reply with no word at all gives ``""``."""
    content, found = answer_content(reply, tag)
    if found and re.search(r"\w", content):
        return content, True
    raw = reply.split("</think>", 1)[-1] if "</think>" in reply else reply
    raw = re.sub(r"\s+", " ", re.sub(r"</?[a-zA-Z]+>", " ", raw)).strip()
    return (raw if re.search(r"\w", raw) else ""), False


def user_rows(train: pd.DataFrame) -> dict[int, np.ndarray]:
    """Row positions of each user's interactions in ``train`` (which must be sorted by user, then time)."""
    users = train["user"].to_numpy()
    _, starts, counts = np.unique(users, return_index=True, return_counts=True)
    return {int(users[s]): np.arange(s, s + c) for s, c in zip(starts, counts)}


def history_before(train: pd.DataFrame, row: int, limit: int) -> np.ndarray:
    """The user's items strictly before training row ``row`` (at most the last ``limit``): never a later one."""
    users = train["user"].to_numpy()
    start = row
    while start > 0 and users[start - 1] == users[row]:
        start -= 1
    return train["item"].to_numpy()[max(start, row - limit): row]


def options(target: int, seen: set[int], n_items: int, negatives: int, rng: np.random.Generator) -> np.ndarray:
    """``target`` and up to ``negatives`` items outside ``seen``, in a seeded random order, padded with -1."""
    pool = rng.permutation(n_items)
    negative = [int(i) for i in pool[: negatives * 4 + len(seen) + 1] if int(i) not in seen and i != target][:negatives]
    chosen = np.array([target, *negative])
    return np.concatenate([chosen[rng.permutation(len(chosen))], np.full(negatives + 1 - len(chosen), -1)])


def candidate_examples(train: pd.DataFrame, rows: np.ndarray, n_items: int, negatives: int, history: int,
                       rng: np.random.Generator, prefix: str = "align:") -> tuple[ExampleSet, Targets]:
    """Alignment examples (the paper's N_ui): per training row, the history before it and its item among
    ``negatives`` items the user never interacted with in ``train``, in a seeded random order."""
    items, users, ts = train["item"].to_numpy(), train["user"].to_numpy(), train["timestamp"].to_numpy()
    seen = {u: set(items[r].tolist()) for u, r in user_rows(train).items()}
    candidates = [options(int(items[row]), seen[int(users[row])], n_items, negatives, rng) for row in rows]
    histories = [history_before(train, int(row), history) for row in rows]
    keys = np.array([f"{prefix}{r}" for r in rows])
    hist = Histories.from_lists(histories)
    examples = ExampleSet(keys=keys, users=users[rows], histories=hist, as_of=ts[rows],
                          candidates=np.stack(candidates).astype(np.int64))
    return examples, Targets.single(items[rows])


def with_candidates(examples: ExampleSet, targets: Targets, train: pd.DataFrame, n_items: int, negatives: int,
                    rng: np.random.Generator) -> ExampleSet:
    """``examples`` (e.g. validation) with candidates: the target and ``negatives`` items outside the history."""
    candidates = [options(int(targets.items_of(row)[0]), set(examples.histories.items_of(row).tolist()), n_items,
                          negatives, rng) for row in range(len(examples))]
    return ExampleSet(keys=examples.keys, users=examples.users, histories=examples.histories, as_of=examples.as_of,
                      candidates=np.stack(candidates).astype(np.int64))


def chronological_windows(timestamps: np.ndarray, windows: int) -> tuple[list[np.ndarray], int]:
    """Positions of ``timestamps`` split into ``windows`` equal spans of time, earliest first (each
    sorted by time, ties in their given order), and how many spans held no interaction (skipped)."""
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if windows < 1:
        raise ValueError(f"windows must be at least 1, got {windows}")
    if not len(timestamps):
        return [], windows
    edges = np.linspace(timestamps.min(), timestamps.max(), windows + 1)
    which = np.clip(np.searchsorted(edges, timestamps, side="right") - 1, 0, windows - 1)
    out, skipped = [], 0
    for w in range(windows):
        members = np.flatnonzero(which == w)
        if not len(members):
            skipped += 1
            continue
        out.append(members[np.argsort(timestamps[members], kind="stable")])
    return out, skipped
