"""Ablation tables: a task spec's named views on leaderboard rows (e.g. the artwork paper's Tables 2-4).

A task spec lists ablations under ``[[ablations]]``::

    [[ablations]]
    title = "Post-training vs the same base model zero-shot (Table 3)"
    methods = ["sft_number", "sft", "sft_reason"]
    columns = { model = "method.fitted.base_model|method.config.model", output = "method.config.output" }
    reference = { method = "zero_shot", "method.config.output" = "text" }
    same = ["model"]

Each table holds the results of ``methods`` under one protocol, one row per run, with a column per
entry of ``columns`` (a dotted path into the results file; ``a|b`` takes the first path present)
and the Δ% of every relative metric against ``reference``: the runs of that method matching every
other key of it (their mean when several). ``same`` names columns on which each row is compared only
with reference runs that hold the same value (e.g. the template verbalization *with the same
reasoner*); a row with no such reference run gets no Δ%. ``show`` names a per-example output field
(e.g. ``verbalization``): a collapsed section under the table then quotes it from every run for the
same ``show_count`` test examples (the verbalization paper's Table 3). ``metrics`` lists the
metrics the table compares (default: the task's relative metrics). ``cases`` is a dotted path to a
list of records a method keeps in its results file (e.g. CURec's patterns and reasons before and
after correction): each run's records are quoted in a collapsed section. Ablations only choose and arrange what the results
files hold; they compute no metric. :mod:`recbench.leaderboard` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recbench.errors import RegistrationError


@dataclass(frozen=True)
class Ablation:
    title: str
    methods: tuple[str, ...]
    columns: tuple[tuple[str, str], ...] = ()
    reference: tuple[tuple[str, Any], ...] = ()
    same: tuple[str, ...] = ()  # column names a row's reference runs must share with it
    show: str | None = None  # a per-example output field quoted for the same few examples of every run
    show_count: int = 3
    metrics: tuple[str, ...] = ()  # metrics with a Δ% and a value column (default: the task's relative metrics)
    cases: str | None = None  # a dotted path to a list of records in each run's results file (a case study)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> Ablation:
        known = {"title", "methods", "columns", "reference", "same", "show", "show_count", "metrics", "cases"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RegistrationError(f"{where}: ablation keys {unknown} are not known; valid keys: {sorted(known)}.")
        if not raw.get("title") or not raw.get("methods"):
            raise RegistrationError(f"{where}: an ablation needs a title and a non-empty methods list; got {raw!r}.")
        reference = dict(raw.get("reference") or {})
        if reference and "method" not in reference:
            raise RegistrationError(f"{where}: ablation {raw['title']!r}: reference needs a 'method' key; got {reference!r}.")
        columns = tuple((str(k), str(v)) for k, v in dict(raw.get("columns") or {}).items())
        same = tuple(str(name) for name in raw.get("same") or ())
        unknown_same = [name for name in same if name not in dict(columns)]
        if unknown_same or (same and not reference):
            raise RegistrationError(
                f"{where}: ablation {raw['title']!r}: 'same' names columns the reference runs must share with each row; "
                f"{unknown_same or same} {'are not among its columns ' + str([k for k, _ in columns]) if unknown_same else 'need a reference'}."
            )
        if int(raw.get("show_count", 3)) < 1:
            raise RegistrationError(f"{where}: ablation {raw['title']!r}: show_count must be at least 1.")
        return cls(title=str(raw["title"]), methods=tuple(raw["methods"]), columns=columns,
                   reference=tuple(reference.items()), same=same, show=raw.get("show"),
                   show_count=int(raw.get("show_count", 3)), metrics=tuple(raw.get("metrics") or ()),
                   cases=raw.get("cases"))


def lookup(doc: dict[str, Any], paths: str) -> Any:
    """The value at the first dotted path of ``paths`` ("a.b|c.d") present in ``doc``, else None."""
    for path in paths.split("|"):
        value: Any = doc
        for part in path.strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None
