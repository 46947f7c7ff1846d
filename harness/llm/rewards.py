"""Rewards for on-policy training and preference data: the task's own metrics, plus format checks.

A reward is built by name plus JSON-ready arguments (:class:`RewardSpec`), so the same reward
can be rebuilt inside a training subprocess or under ``accelerate launch``. It is called as
``reward(replies, rows)``: the model's replies (text after the prompt) and, per reply, the
answer row its task interface wrote (:meth:`recbench.llm.interface.TaskInterface.answer_rows`),
and returns one float per reply.

Built-ins:

- ``metric`` (``name=``): the task's per-example metric of the reply, computed by
  :mod:`recbench.metrics` itself (``recall@1``, ``accuracy``, ``ips``, ``ndcg@5``, ...): one
  implementation of each metric in the code base;
- ``format``: 1 when the reply keeps the asked-for shape (``<think>...</think><answer>...</answer>``
  for ``output=think``, an answer tag for ``number``, a parsable list for titles);
- ``legal``: 1 when the reply commits to an answer that is one of the candidates (exactly one
  option, inside the answer tag where the format has one) / grounds to a catalog item. A reply
  that lists several options, or names a number outside the answer tag, is legal for no option:
  otherwise a small policy learns to enumerate the candidates, which evaluation still reads
  (first named), and the format reward never rises (measured on CURec's alignment);
- ``correct``: 1 when that committed answer (the first item a list names) is the target, else 0
  (the CURec paper's correctness reward);
- ``distinct``: the number of distinct catalog items a reply names, as the task's reader grounds
  them (misses and repeats dropped), over the list length ``k``: a preference that is in the text,
  which the RLHF recipe's reward-model control ranks replies by;
- ``rank``: a dense reward for small models: 1/rank of the target when options are ordered by
  how much of each one the reply names (n-gram overlap or the named number first), so a near miss
  earns more than nothing and a group of replies rarely has zero variance.

:func:`combine` sums weighted specs. Register more with :func:`register_reward`, or from a plugin
with the ``recbench_register_rewards`` hook (loaded by :func:`load_plugin_rewards`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbench.errors import ConfigError, RecbenchError, RegistrationError, UnknownNameError
from recbench.llm.interface import Reading, read_reply
from recbench.llm.parsing import ngram_overlap

RewardFn = Callable[[Sequence[str], Sequence[dict[str, Any]]], Sequence[float]]
RewardFactory = Callable[..., RewardFn]

REWARDS: dict[str, RewardFactory] = {}
# a built-in whose meaning changed: its revision goes into every checkpoint recipe that uses it, so that no
# checkpoint trained on the old meaning is reused (legal/correct 2: a committed answer, see the docstring)
REVISIONS: dict[str, int] = {"legal": 2, "correct": 2}
_PLUGINS_LOADED: list[bool] = []


class RewardError(RecbenchError):
    """A reward returned the wrong number of values, or a value that is not a finite number."""


def register_reward(name: str, factory: RewardFactory) -> None:
    """Make ``name`` available to every recipe's ``rewards`` option; ``factory(**args)`` builds it."""
    if name in REWARDS and REWARDS[name] is not factory:
        raise RegistrationError(f"reward {name!r} is already registered ({REWARDS[name]!r}); pick another name.")
    REWARDS[name] = factory


def load_plugin_rewards() -> None:
    """Register the rewards of installed plugins (the ``recbench_register_rewards`` hook)."""
    from recbench.manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.hook.recbench_register_rewards(register=register_reward)


@dataclass(frozen=True)
class RewardSpec:
    """A reward by name, its JSON-ready arguments, and its weight in a sum."""

    name: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> RewardSpec:
        """``"metric"``, ``"0.5*format"``, ``"metric:name=ndcg@5"`` or ``"0.9*metric:name=recall@1"``."""
        weight, _, rest = text.rpartition("*")
        name, _, args_text = rest.partition(":")
        args = dict(part.split("=", 1) for part in args_text.split(",") if part) if args_text else {}
        try:
            w = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ConfigError(f"reward {text!r}: the weight before '*' must be a number") from exc
        return cls(name.strip(), w, args)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "weight": self.weight, "args": dict(sorted(self.args.items()))}
        if self.name in REVISIONS:  # keys the checkpoint; rebuilding a reward reads name, weight and args only
            out["revision"] = REVISIONS[self.name]
        return out


def build_reward(spec: RewardSpec) -> RewardFn:
    """The reward ``spec`` names; an unknown name gets a 'did you mean' and the list."""
    factory = REWARDS.get(spec.name)
    if factory is None and not _PLUGINS_LOADED:
        _PLUGINS_LOADED.append(True)
        load_plugin_rewards()
        factory = REWARDS.get(spec.name)
    if factory is None:
        close = difflib.get_close_matches(spec.name, REWARDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown reward {spec.name!r}.{hint} Registered rewards: {', '.join(sorted(REWARDS))}.")
    try:
        return factory(**spec.args)
    except TypeError as exc:
        raise ConfigError(f"reward {spec.name!r}: bad arguments {spec.args}: {exc}") from exc


def checked(name: str, values: Any, n: int) -> np.ndarray:
    """``values`` as n finite floats, or a :class:`RewardError` naming the reward and the problem."""
    try:
        array = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward {name!r} returned values that are not numbers: {exc}") from exc
    if array.shape != (n,):
        raise RewardError(f"reward {name!r} returned {array.size} values for {n} replies; it must return one per reply.")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise RewardError(f"reward {name!r} returned {array[bad]} for reply {bad}; rewards must be finite numbers.")
    return array


class Combined:
    """A weighted sum of rewards; ``parts`` keeps each one's last values for training logs."""

    def __init__(self, specs: Sequence[RewardSpec]) -> None:
        if not specs:
            raise ConfigError("no rewards given: name at least one, e.g. rewards=metric")
        self.specs = tuple(specs)
        self.functions = [build_reward(s) for s in self.specs]
        self.parts: dict[str, np.ndarray] = {}

    def __call__(self, replies: Sequence[str], rows: Sequence[dict[str, Any]]) -> np.ndarray:
        total = np.zeros(len(replies))
        for spec, function in zip(self.specs, self.functions):
            values = checked(spec.name, function(replies, rows), len(replies))
            self.parts[spec.name] = values
            total += spec.weight * values
        return total


def combine(specs: Sequence[RewardSpec]) -> Combined:
    return Combined(specs)


# --- built-in rewards -----------------------------------------------------------------------------


def _outcome_value(metric_name: str, ranked: Sequence[int], gold: Sequence[int], propensity: float | None) -> float:
    """``metric_name`` of one ranked answer against its gold positions, computed by recbench.metrics."""
    from recbench.metrics import BUILTIN_METRICS, Outcome, parse_metric_name

    family, k, _ = parse_metric_name(metric_name)
    metric = {m.name: m for m in BUILTIN_METRICS}[family]
    width = max(len(ranked), k or 1, 1)
    gold_set = set(gold)
    hits = np.zeros((1, width), dtype=bool)
    for position, code in enumerate(ranked):
        hits[0, position] = code in gold_set
    extras = {"propensity": np.array([propensity])} if propensity is not None else {}
    outcome = Outcome(hits, np.array([max(1, len(gold_set))]), extras)
    return float(metric.per_example(outcome, k)[0])


def metric_reward(name: str = "recall@1") -> RewardFn:
    """The task's metric ``name`` (subset suffixes like ``[discovery]`` are dropped) of each reply."""
    from recbench.metrics import BUILTIN_METRICS, parse_metric_name

    family, _, _ = parse_metric_name(name.split("[")[0])
    if family not in {m.name for m in BUILTIN_METRICS}:
        raise ConfigError(f"reward 'metric': {name!r} is not a built-in metric family")
    base = name.split("[")[0]

    def reward(replies: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
        out = []
        for text, row in zip(replies, rows):
            reading = read_reply(text, row)
            out.append(_outcome_value(base, reading.ranked if reading.valid else (), row["gold"], row.get("propensity")))
        return out

    return reward


def committed(reading: Reading) -> bool:
    """The reply names one valid answer where its format puts it (the legal and correct rewards' premise)."""
    return reading.valid and reading.answered and bool(reading.ranked)


def format_reward() -> RewardFn:
    def reward(replies, rows):
        return [float(read_reply(text, row).formatted) for text, row in zip(replies, rows)]

    return reward


def legal_reward() -> RewardFn:
    def reward(replies, rows):
        return [float(committed(read_reply(text, row))) for text, row in zip(replies, rows)]

    return reward


def correct_reward() -> RewardFn:
    def reward(replies, rows):
        out = []
        for text, row in zip(replies, rows):
            reading = read_reply(text, row)
            out.append(float(committed(reading) and reading.ranked[0] in set(row["gold"])))
        return out

    return reward


def distinct_reward() -> RewardFn:
    def reward(replies, rows):
        return [len(read_reply(text, row).ranked) / max(1, int(row.get("k", 1))) for text, row in zip(replies, rows)]

    return reward


def rank_reward() -> RewardFn:
    """Dense: 1/rank of the gold option when options are ordered by how strongly the reply names them."""

    def reward(replies, rows):
        out = []
        for text, row in zip(replies, rows):
            if row["reader"] != "choice" or not row["gold"]:
                reading = read_reply(text, row)  # lists: reciprocal rank of the first gold title
                ranks = [i for i, code in enumerate(reading.ranked) if code in set(row["gold"])]
                out.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
                continue
            reading = read_reply(text, row)
            if row["output"] in ("number", "think") or not reading.valid:
                # a named number is all or nothing: right 1, a wrong but legal option 0.1, unreadable 0
                right = reading.valid and reading.ranked[0] == row["gold"][0]
                out.append(1.0 if right else (0.1 if reading.valid else 0.0))
                continue
            scores = [ngram_overlap(text, option) for option in row["options"]]
            gold = row["gold"][0]
            rank = 1 + sum(s > scores[gold] for s in scores)
            out.append(1.0 / rank if scores[gold] > 0 else 0.0)
        return out

    return reward


def length_plateau_reward(low: float = 0.3, high: float = 0.7, source_chars: str = "source_chars") -> RewardFn:
    """1 when len(reply) / row[source_chars] lies in [low, high], falling off linearly outside (a length prior)."""
    low, high = float(low), float(high)

    def reward(replies, rows):
        out = []
        for text, row in zip(replies, rows):
            ratio = len(text) / max(1, float(row.get(source_chars, len(text)) or 1))
            if ratio < low:
                out.append(max(0.0, ratio / low) if low > 0 else 1.0)
            elif ratio > high:
                out.append(max(0.0, 1.0 - (ratio - high) / max(1e-9, 1.0 - high)))
            else:
                out.append(1.0)
        return [v if math.isfinite(v) else 0.0 for v in out]

    return reward


for _name, _factory in (("metric", metric_reward), ("format", format_reward), ("legal", legal_reward),
                        ("correct", correct_reward), ("distinct", distinct_reward), ("rank", rank_reward),
                        ("length_plateau", length_plateau_reward)):
    register_reward(_name, _factory)
