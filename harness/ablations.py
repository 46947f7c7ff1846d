"""Ablation tables: a task spec's named views on leaderboard rows (e.g. the artwork paper's Tables 2-4).

A task spec lists ablations under ``[[ablations]]``::

    [[ablations]]
    title = "Post-training vs the same base model zero-shot (Table 3)"
    methods = ["sft_number", "sft", "sft_reason"]
    columns = { model = "method.fitted.base_model|method.config.model", output = "method.config.output" }
    reference = { method = "zero_shot", "method.config.output" = "text" }

Each table holds the results of ``methods`` under one protocol, one row per run, with a column per
entry of ``columns`` (a dotted path into the results file; ``a|b`` takes the first path present)
and the Δ% of every relative metric against ``reference``: the runs of that method matching every
other key of it (their mean when several). Ablations only choose and arrange what the results
files hold; they compute no metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recbench.errors import RegistrationError


@dataclass(frozen=True)
class Ablation:
    title: str
    methods: tuple[str, ...]
    columns: tuple[tuple[str, str], ...] = ()
    reference: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> Ablation:
        known = {"title", "methods", "columns", "reference"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RegistrationError(f"{where}: ablation keys {unknown} are not known; valid keys: {sorted(known)}.")
        if not raw.get("title") or not raw.get("methods"):
            raise RegistrationError(f"{where}: an ablation needs a title and a non-empty methods list; got {raw!r}.")
        reference = dict(raw.get("reference") or {})
        if reference and "method" not in reference:
            raise RegistrationError(f"{where}: ablation {raw['title']!r}: reference needs a 'method' key; got {reference!r}.")
        return cls(title=str(raw["title"]), methods=tuple(raw["methods"]),
                   columns=tuple((str(k), str(v)) for k, v in dict(raw.get("columns") or {}).items()),
                   reference=tuple(reference.items()))


@dataclass
class AblationTable:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def lookup(doc: dict[str, Any], paths: str) -> Any:
    """The value at the first dotted path of ``paths`` ("a.b|c.d") present in ``doc``, else None."""
    for path in paths.split("|"):
        value: Any = doc
        for part in path.strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def build(ablation: Ablation, docs: Sequence[dict[str, Any]], relative: Sequence[str], labels: dict[str, str],
          value: Callable[[dict[str, Any], str], float | None], delta: Callable[[bool, float | None, float | None], str],
          show: Callable[[Any], str]) -> AblationTable | None:
    """The ablation's table over ``docs`` (one protocol), or None when none of its methods ran there.

    ``labels`` maps run ids to leaderboard row labels; ``value(doc, metric)``, ``delta(is_ref, value,
    ref)`` and ``show(value)`` are the leaderboard's own cell helpers, so both pages read alike.
    """
    runs = [d for d in docs if d["method"]["name"] in ablation.methods]
    if not runs:
        return None

    def cell(doc: dict[str, Any], paths: str) -> str:
        found = lookup(doc, paths)
        return "-" if found is None else show(found)

    ref = dict(ablation.reference)
    headers = ["run", *(name for name, _ in ablation.columns)]
    means: dict[str, float | None] = {}
    ref_docs: list[dict[str, Any]] = []
    if ref:
        ref_docs = [d for d in docs if d["method"]["name"] == ref["method"]
                    and all(lookup(d, k) == v for k, v in ref.items() if k != "method")]
        what = ", ".join(f"{k}={v}" for k, v in ref.items() if k != "method")
        name = ref["method"] + (f" ({what})" if what else "")
        headers += [f"Δ% {m} vs {name}" for m in relative]
        for metric in relative:
            found = [v for v in (value(d, metric) for d in ref_docs) if v is not None]
            means[metric] = sum(found) / len(found) if found else None
    headers += [*relative, "command"]
    order = {m: i for i, m in enumerate(ablation.methods)}
    table = AblationTable(ablation.title, headers)
    for doc in sorted(runs, key=lambda d: (order[d["method"]["name"]], [cell(d, p) for _, p in ablation.columns])):
        line = [labels.get(doc["run_id"], doc["method"]["name"]), *(cell(doc, p) for _, p in ablation.columns)]
        if ref:
            line += [delta(doc in ref_docs, value(doc, m), means[m]) for m in relative]
        line += [f"{v:.4f}" if (v := value(doc, m)) is not None else "-" for m in relative]
        line.append(f"`{doc['command']}`" if doc.get("command") else "-")
        table.rows.append(line)
    return table
