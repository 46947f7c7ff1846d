"""Leaderboards: Markdown pages rendered only from results files.

Results are grouped by protocol fingerprint and each group gets its own ranked table: rows whose
protocols differ are never ranked together, and a note names the protocol keys that differ. The
output depends only on the results documents, so re-rendering the same files gives the same page.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from recbench.ablations import Ablation, lookup
from recbench.errors import RecbenchError
from recbench.hashing import stable_hash
from recbench.param_sweeps import ParamSweep, swept_protocols, sweep_section
from recbench.leaderboard_sections import (
    INCOMPLETE, ceiling_values, comparison_plot, curves_plot, details_section, flag_legend, latency_section, option_plots,
    metric_values, paired_cell, paired_section, paired_tests, row_flags, seed_section,
)
from recbench.results import ResultStore, atomic_write_text, examples_file_of, examples_problem, read_examples

CEILING_METHODS = frozenset({"oracle"})
_HEX = re.compile(r"[0-9a-f]{16,}")


@dataclass(frozen=True)
class LeaderboardTable:
    """One protocol's rows, as the strings shown in its Markdown table (ranked rows first)."""

    fingerprint: str
    protocol: dict[str, Any]
    primary_metric: str
    headers: list[str]
    rows: list[list[str]]
    run_ids: list[str]  # the run behind each row, in row order
    extra: list[str] = field(default_factory=list)  # Markdown lines under the table: flags, paired tests, seeds, details


@dataclass(frozen=True)
class Leaderboard:
    task: str
    markdown: str
    tables: list[LeaderboardTable]
    notes: list[str]  # why tables were split, missing references, dropped duplicates


@dataclass
class _Row:
    doc: dict[str, Any]
    label: str = ""

    @property
    def method(self) -> str:
        return self.doc["method"]["name"]

    @property
    def ceiling(self) -> bool:
        return self.method in CEILING_METHODS or self.doc.get("ceiling") is True

    def value(self, metric: str) -> float | None:
        value = (self.doc["metrics"].get(metric) or {}).get("value")
        return float(value) if isinstance(value, (int, float)) and value == value else None


def render_leaderboard(
    task: str,
    store: ResultStore,
    *,
    reference: str | None = None,
    metrics: Sequence[str] | None = None,
    out_dir: Path | None = None,
    ablations: Sequence[Ablation] = (),
    spec_metrics: Sequence[str] | None = None,
    param_sweeps: Sequence[ParamSweep] = (),
    defaults: dict[str, Any] | None = None,
) -> Leaderboard:
    """Render the leaderboard of ``task`` from the results in ``store``.

    ``reference`` names the method (or row label) the ``Δ%`` column compares against; by default
    the newest result's ``task.reference``, and no such column when neither is set. ``metrics``
    restricts the metric columns; the primary metric is always shown first. ``out_dir`` is the
    folder the page will be written to: plot links are made relative to it (default: relative to
    the results folder). ``ablations`` (the task spec's) add tables under each protocol's ranking.
    ``spec_metrics`` (the task spec's metric list) hides metrics older results hold but the task no
    longer reports (the artwork task's SNIPS). ``param_sweeps`` (the task spec's) add a figure each of a
    metric against one task parameter, across the protocols that differ from ``defaults`` (the task's
    default protocol keys, :func:`recbench.param_sweeps.default_protocol`) in that parameter alone.
    """
    notes: list[str] = []
    docs = _load(task, store, notes)
    if not docs:
        raise RecbenchError(
            f"no results for task {task!r} in {store.root}/; produce one with "
            f"`recbench run --task {task} --method <method>` (`recbench list` shows the methods)."
        )
    newest = docs[-1]
    reference = reference or newest["task"].get("reference")
    if param_sweeps and defaults is None:
        raise ValueError("param_sweeps need the task's default protocol keys (defaults=default_protocol(spec, kind))")
    primary = newest.get("primary_metric") or newest["task"]["primary_metric"]
    swept = swept_protocols(param_sweeps, docs, defaults, primary)
    if swept:
        runs = sum(doc["protocol"]["fingerprint"] in swept for doc in docs)
        notes.append(f"{runs} runs at other values of a swept task parameter "
                     f"({', '.join(sorted({s.param for s in param_sweeps}))}) are shown in their parameter sweep's "
                     "figure and table below, not as leaderboards of their own.")
    groups: dict[str, list[dict[str, Any]]] = {}
    for doc in reversed(docs):  # the protocol of the newest result first: most likely the current one
        if doc["protocol"]["fingerprint"] not in swept:
            groups.setdefault(doc["protocol"]["fingerprint"], []).append(doc)
    groups_list = list(groups.values())
    if len(groups_list) > 1:
        notes.append(_protocol_note(groups_list))
    rows_by_run: dict[str, list[dict[str, Any]]] = {}
    values: dict[tuple[str, str], dict[str, float]] = {}

    def rows_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
        """A run's per-example rows, read once per render (none for a run whose file cannot back it)."""
        if doc["run_id"] not in rows_by_run:
            path = examples_file_of(store.path(task, doc["method"]["name"], doc["run_id"]), doc)
            rows_by_run[doc["run_id"]] = read_examples(path) if not doc.get(INCOMPLETE) and path.is_file() else []
        return rows_by_run[doc["run_id"]]

    def examples_of(doc: dict[str, Any], metric: str) -> dict[str, float]:
        if (doc["run_id"], metric) not in values:
            values[doc["run_id"], metric] = metric_values(rows_of(doc), metric)
        return values[doc["run_id"], metric]

    if metrics is None and spec_metrics:
        present = {name for doc in docs for name in doc["metrics"]}
        metrics = [name for name in spec_metrics if name in present] or None
    tables = [_table(group, reference, metrics, notes, examples_of) for group in groups_list]
    git = (newest.get("environment") or {}).get("git") or {}
    commit = f"`{git['commit'][:12]}`" if git.get("commit") else "unknown"
    commit += " (dirty tree)" if git.get("dirty") else ""
    lines = [
        f"# Leaderboard: {task}",
        "",
        newest["task"].get("description") or "(no task description recorded)",
        "",
        f"Generated by `recbench leaderboard --task {task}` from the results files; do not edit by hand.",
        f"Newest result: {newest.get('created_at', 'unknown date')}, git commit {commit}.",
    ]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    for table, group in zip(tables, groups_list):
        lines += ["", *_section(table, group, store, out_dir)]
        relative = newest["task"].get("relative_metrics") or [table.primary_metric]
        for ablation in ablations:
            lines += _ablation_section(ablation, group, table, ablation.metrics or relative)
            lines += _shown_outputs(ablation, group, table, rows_of) if ablation.show else []
            lines += _cases(ablation, group, table) if ablation.cases else []
    for sweep in param_sweeps:
        lines += sweep_section(sweep, docs, defaults, task, primary, out_dir)
    return Leaderboard(task=task, markdown="\n".join(lines) + "\n", tables=tables, notes=notes)


def write_leaderboard(task: str, store: ResultStore, out_dir: Path = Path("leaderboards"), **kw: Any) -> Path:
    """Render the leaderboard of ``task`` and write it to ``out_dir/<task>.md`` atomically."""
    board = render_leaderboard(task, store, out_dir=Path(out_dir), **kw)
    path = Path(out_dir) / f"{task}.md"
    atomic_write_text(path, board.markdown)
    return path


def _load(task: str, store: ResultStore, notes: list[str]) -> list[dict[str, Any]]:
    """Complete result documents of ``task``, oldest first, one per (protocol, method, config, seed)."""
    kept: dict[tuple[str, str, str, Any], dict[str, Any]] = {}
    for path, doc in store.iter_results(task):
        missing = _missing_keys(doc)
        if missing:
            print(f"recbench: skipping incomplete results file {path}: missing {missing}. Delete it and rerun.",
                  file=sys.stderr)
            continue
        problem = examples_problem(path, doc)
        if problem:  # shown, flagged and left out of the paired tests; the note says how to restore it
            notes.append(f"Run `{doc['run_id']}` of {doc['method']['name']}: {problem}, so its row is flagged and has "
                         f"no paired test; `{doc.get('command') or 'recbench run ...'} --force` restores it.")
            doc = {**doc, INCOMPLETE: problem}
        key = (doc["protocol"]["fingerprint"], doc["method"]["name"], stable_hash(doc["method"].get("config") or {}),
               doc.get("seed"))
        old = kept.get(key)
        if old is not None and old["run_id"] != doc["run_id"]:
            doc, old = sorted([doc, old], key=_age)[::-1]
            changed = _resolved_changes(old, doc)  # same options as given, but the preset may resolve otherwise now
            how = (f"is superseded by run `{doc['run_id']}`: the same options, protocol and seed, but the preset "
                   f"resolved differently ({changed})" if changed else
                   f"repeats run `{doc['run_id']}` (same protocol, config and seed)")
            notes.append(f"Run `{old['run_id']}` of {key[1]} {how}; only the newer `{doc['run_id']}` is shown.")
        kept[key] = doc
    return sorted(kept.values(), key=_age)


def _resolved_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key old -> new`` for each preset value (``method.fitted.resolved``) the two runs resolved differently."""
    before = ((old["method"].get("fitted") or {}).get("resolved")) or {}
    after = ((new["method"].get("fitted") or {}).get("resolved")) or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    return ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in sorted(set(before) | set(after))
                     if before.get(k) != after.get(k))


def _missing_keys(doc: dict[str, Any]) -> list[str]:
    required = {"run_id": str, "task": dict, "method": dict, "protocol": dict, "metrics": dict}
    missing = [key for key, kind in required.items() if not isinstance(doc.get(key), kind)]
    missing += [] if missing or "fingerprint" in doc["protocol"] else ["protocol.fingerprint"]
    return missing + ([] if missing or "name" in doc["method"] else ["method.name"])


def _age(doc: dict[str, Any]) -> tuple[str, str]:
    return (doc.get("created_at") or "", doc["run_id"])


def _table(group: list[dict[str, Any]], reference: str | None, only: Sequence[str] | None,
           notes: list[str], examples_of: Any = lambda doc, metric: {}) -> LeaderboardTable:
    newest = max(group, key=_age)
    fingerprint = newest["protocol"]["fingerprint"]
    primary = newest.get("primary_metric") or newest["task"]["primary_metric"]
    columns = _metric_columns(group, primary, only)
    higher = bool((newest["metrics"].get(primary) or {}).get("higher_is_better", True))
    rows = [_Row(doc) for doc in group]
    _label(rows)

    def order(row: _Row) -> tuple[int, float, str]:
        value = row.value(primary)
        missing = value is None
        return (2 * row.ceiling + missing, 0.0 if missing else (-value if higher else value), row.label)

    rows.sort(key=order)
    ref_value, ref_rows = None, []
    if reference:
        ref_rows = [r for r in rows if r.label == reference] or [r for r in rows if r.method == reference]
        values = [v for v in (r.value(primary) for r in ref_rows) if v is not None]
        ref_value = sum(values) / len(values) if values else None
        ref_means = {}
        for metric in newest["task"].get("relative_metrics") or [primary]:
            found = [v for v in (r.value(metric) for r in ref_rows) if v is not None]
            ref_means[metric] = sum(found) / len(found) if found else None
        if ref_value is None:
            notes.append(f"Reference `{reference}` has no {primary} result under protocol `{fingerprint}`, so its "
                         f"Δ% column is n/a; run `recbench run --task {newest['task']['name']} --method {reference}` "
                         f"under this protocol to fill it.")
        elif len(values) > 1:
            notes.append(f"Reference `{reference}` has {len(values)} rows under protocol `{fingerprint}`; Δ% is "
                         f"relative to their mean {primary} ({ref_value:.4f}).")
    relative = [m for m in newest["task"].get("relative_metrics") or [primary] if m in columns] or [primary]
    tests = paired_tests(rows, ref_rows, primary, examples_of) if reference else {}
    headers = ["rank", "method", *columns]
    if reference:
        headers += [f"Δ% vs {reference}"] if relative == [primary] else [f"Δ% {m} vs {reference}" for m in relative]
        headers += [f"Δ {primary} vs {reference}, paired"] if tests else []
    headers += ["flags"]
    ceilings = ceiling_values([r.doc for r in rows if r.ceiling])
    cells, rank, used = [], 0, set()
    for row in rows:
        ranked = not row.ceiling and row.value(primary) is not None
        rank += ranked
        line = [str(rank) if ranked else "-", row.label + (" (ceiling)" if row.ceiling else "")]
        line += [_metric_cell(row.doc["metrics"].get(metric), interval=metric == primary) for metric in columns]
        if reference:
            line += [_delta(row in ref_rows, row.value(m), ref_means.get(m)) for m in relative]
            line += [paired_cell(tests.get(row.doc["run_id"]), row in ref_rows)] if tests else []
        flags = [] if row.ceiling else row_flags(row.doc, ceilings, columns)
        used.update(flags)
        line.append("; ".join(flags) or "-")
        cells.append([cell.replace("|", "\\|") for cell in line])
    extra = flag_legend(used)
    extra += paired_section(rows, tests, primary, reference) if reference else []
    extra += seed_section(rows, [primary, *[m for m in relative if m != primary]])
    extra += latency_section(rows)
    extra += details_section(rows, [[row.label, *(_metric_cell(row.doc["metrics"].get(m)) for m in columns[1:])]
                                    for row in rows] if len(columns) > 1 else [], columns[1:])
    return LeaderboardTable(fingerprint, newest["protocol"], primary, headers, cells, [r.doc["run_id"] for r in rows], extra)


def _metric_columns(group: list[dict[str, Any]], primary: str, only: Sequence[str] | None) -> list[str]:
    """The task's metric order (as the runner recorded it, newest first), primary metric first."""
    names: list[str] = []
    for doc in sorted(group, key=_age, reverse=True):
        names += [name for name in doc["metrics"] if name not in names]
    if only:
        unknown = [name for name in only if name not in names]
        if unknown:
            raise RecbenchError(f"unknown metric(s) {unknown} for --metrics; the results have: {names}.")
        names = [name for name in names if name in only]
    return [primary] + [name for name in names if name != primary]


def _label(rows: list[_Row]) -> None:
    """Method name, plus the config keys that differ between its configs, plus the seed if several."""
    by_method: dict[str, list[_Row]] = {}
    for row in rows:
        by_method.setdefault(row.method, []).append(row)
    for method, same in by_method.items():
        configs = [_flatten(row.doc["method"].get("config") or {}) for row in same]
        differing = sorted({k for c in configs for k in c if any(k not in o or o[k] != c[k] for o in configs)})
        several_seeds = len({row.doc.get("seed") for row in same}) > 1
        for row, config in zip(same, configs):
            tags = [f"{k}={_config_value(row, config, k)}" for k in differing]
            tags += [f"seed {row.doc.get('seed')}"] if several_seeds else []
            row.label = f"{method} ({', '.join(tags)})" if tags else method


def _config_value(row: _Row, config: dict[str, Any], key: str) -> str:
    """A config value for a label; an option left to a preset (None) shows the value the run resolved."""
    value = config.get(key, "(unset)")
    resolved = (row.doc["method"].get("fitted") or {}).get("resolved") or {}
    if value is None and key in resolved:
        return f"{_show(resolved[key])} by preset"
    return _show(value)


def _protocol_note(groups: list[list[dict[str, Any]]]) -> str:
    first = groups[0][0]["protocol"]
    base = _flatten({k: v for k, v in first.items() if k != "fingerprint"})
    parts = []
    for i, group in enumerate(groups[1:], start=2):
        other = _flatten({k: v for k, v in group[0]["protocol"].items() if k != "fingerprint"})
        diffs = [f"{k}: {_show(base.get(k, '(absent)'))} vs {_show(other.get(k, '(absent)'))}"
                 for k in sorted(set(base) | set(other)) if k not in base or k not in other or base[k] != other[k]]
        what = "; ".join(diffs) or "no key (only the fingerprint differs; the fingerprint rule may have changed)"
        parts.append(f"table 1 (`{first['fingerprint']}`) vs table {i} (`{group[0]['protocol']['fingerprint']}`) "
                     f"differ in {what}")
    return (f"Results are split into {len(groups)} tables because their protocols differ, so rows in different "
            f"tables are not comparable and are never ranked together: " + "; and ".join(parts) + ".")


def _section(table: LeaderboardTable, group: list[dict[str, Any]], store: ResultStore, out_dir: Path | None) -> list[str]:
    protocol, newest = table.protocol, max(group, key=_age)
    dataset = protocol.get("dataset") or (newest.get("dataset") or {}).get("name", "?")
    dataset_hash = protocol.get("dataset_hash") or (newest.get("dataset") or {}).get("content_hash", "?")
    split = "; ".join(f"{k}={_show(v)}" for k, v in _flatten(protocol.get("split") or {}).items()) or "not described"
    higher = (newest["metrics"].get(table.primary_metric) or {}).get("higher_is_better", True)
    lines = [
        f"## {dataset}, task v{protocol.get('task_version', '?')}, protocol `{table.fingerprint}`",
        "",
        f"Dataset `{dataset}` (content hash `{_show(dataset_hash)}`); split: {split}. Ranked by "
        f"{table.primary_metric} ({'higher' if higher else 'lower'} is better); brackets are 95% bootstrap CIs (the other "
        "metrics' intervals are in the details below).",
        "",
        tabulate(table.rows, headers=table.headers, tablefmt="github", disable_numparse=True),
        *table.extra,
    ]
    if out_dir is not None:  # plots are drawn beside the page, from the results
        out = Path(out_dir)
        compared = comparison_plot(newest["task"]["name"], table.fingerprint, table.primary_metric,
                                   _interval_points(table, group), out)
        if compared is not None:  # at the top: the ranking at a glance
            lines[4:4] = [f"![{table.primary_metric} of every ranked row]({compared.relative_to(out).as_posix()})", ""]
        ordered = sorted(group, key=_age)
        plots = [p for p in (option_plots(ordered, out), curves_plot(ordered, out)) if p is not None]
        lines += ["", *(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plots)] if plots else []
    return lines


def _interval_points(table: LeaderboardTable, group: list[dict[str, Any]]) -> list[tuple[str, float, float, float]]:
    """(label, value, low, high) of the primary metric of each ranked row, in table order."""
    by_id = {doc["run_id"]: doc for doc in group}
    points = []
    for row, run_id in zip(table.rows, table.run_ids):
        entry = (by_id[run_id]["metrics"].get(table.primary_metric) or {}) if row[0] != "-" else {}
        values = [entry.get(k) for k in ("value", "ci_low", "ci_high")]
        if all(isinstance(v, (int, float)) for v in values):
            points.append((row[1].replace("\\|", "|"), *(float(v) for v in values)))
    return points


def _ablation_section(ablation: Ablation, group: list[dict[str, Any]], table: LeaderboardTable,
                      relative: Sequence[str]) -> list[str]:
    """One ablation's table over one protocol's results (nothing when none of its methods ran there)."""
    runs = [_Row(doc) for doc in group if doc["method"]["name"] in ablation.methods]
    if not runs:
        return []
    labels = dict(zip(table.run_ids, (row[1] for row in table.rows)))

    def cell(row: _Row, paths: str) -> str:
        found = lookup(row.doc, paths)
        return "-" if found is None else _show(found)

    headers = ["run", *(name for name, _ in ablation.columns)]
    ref = dict(ablation.reference)
    ref_rows: list[_Row] = []
    if ref:
        ref_rows = [_Row(doc) for doc in group if doc["method"]["name"] == ref["method"]
                    and all(lookup(doc, k) == v for k, v in ref.items() if k != "method")]
        what = ", ".join([f"{k}={v}" for k, v in ref.items() if k != "method"] + [f"same {name}" for name in ablation.same])
        headers += [f"Δ% {m} vs {ref['method']}" + (f" ({what})" if what else "") for m in relative]
    columns = dict(ablation.columns)

    def reference_means(row: _Row) -> dict[str, float | None]:
        """The mean of each relative metric over the reference runs that share the row's ``same`` columns."""
        matching = [r for r in ref_rows if all(cell(r, columns[name]) == cell(row, columns[name]) for name in ablation.same)]
        found = {m: [v for v in (r.value(m) for r in matching) if v is not None] for m in relative}
        return {m: sum(values) / len(values) if values else None for m, values in found.items()}

    headers += [*relative, "command"]
    ref_ids = {r.doc["run_id"] for r in ref_rows}
    order = {m: i for i, m in enumerate(ablation.methods)}
    cells = []
    for row in sorted(runs, key=lambda r: (order[r.method], [cell(r, p) for _, p in ablation.columns])):
        line = [labels.get(row.doc["run_id"], row.method), *(cell(row, p) for _, p in ablation.columns)]
        is_ref = row.doc["run_id"] in ref_ids
        if ref:
            means = reference_means(row)
            line += [_delta(is_ref, row.value(m), means[m]) for m in relative]
        line += [f"{v:.4f}" if (v := row.value(m)) is not None else "-" for m in relative]
        line.append(f"`{row.doc['command']}`" if row.doc.get("command") else "-")
        cells.append([c.replace("|", "\\|") for c in line])
    return ["", f"### Ablation: {ablation.title}", "",
            tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)]


def _shown_outputs(ablation: Ablation, group: list[dict[str, Any]], table: LeaderboardTable, rows_of: Any,
                  width: int = 600) -> list[str]:
    """The ablation's ``show`` field quoted from each of its runs for the same first test examples that all of them have."""
    labels = dict(zip(table.run_ids, (row[1] for row in table.rows)))
    texts: dict[str, dict[str, str]] = {}
    order = {m: i for i, m in enumerate(ablation.methods)}
    for doc in sorted((d for d in group if d["method"]["name"] in ablation.methods), key=lambda d: order[d["method"]["name"]]):
        found = {str(r["key"]): str(r[ablation.show]) for r in rows_of(doc) if r.get(ablation.show) not in (None, "")}
        if found:
            texts[labels.get(doc["run_id"], doc["method"]["name"])] = found
    if not texts:
        return []
    common = sorted(set.intersection(*(set(t) for t in texts.values())), key=lambda k: (len(k), k))[: ablation.show_count]
    if not common:
        return []
    lines = ["", f"<details><summary>{ablation.show} of each run for the same {len(common)} test examples</summary>", ""]
    for key in common:
        lines += [f"Example `{key}`:", ""]
        for label, found in texts.items():
            lines.append(f"- **{label}**: {_quoted(found[key], width)}")
        lines.append("")
    return lines + ["</details>"]


def _cases(ablation: Ablation, group: list[dict[str, Any]], table: LeaderboardTable, width: int = 400) -> list[str]:
    """Each run's records at the ablation's ``cases`` path (a case study), quoted field by field."""
    labels = dict(zip(table.run_ids, (row[1] for row in table.rows)))
    lines = []
    for doc in group:
        records = lookup(doc, ablation.cases) if doc["method"]["name"] in ablation.methods else None
        if not isinstance(records, list) or not records:
            continue
        lines += ["", f"**{labels.get(doc['run_id'], doc['method']['name'])}**:", ""]
        for number, record in enumerate(records, 1):
            fields = record.items() if isinstance(record, dict) else [("value", record)]
            for name, value in fields:
                lines.append(f"- case {number}, {name}: {_quoted(value, width)}")
    if not lines:
        return []
    return ["", f"<details><summary>Case study: {ablation.cases.split('.')[-1].replace('_', ' ')} of each run</summary>",
            *lines, "", "</details>"]


def _quoted(value: Any, width: int) -> str:
    """A model's text on one Markdown line: whitespace folded, cut to ``width``, tags shown rather than parsed."""
    text = " ".join(str(value).split())
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "/")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict) or (not obj and prefix):
        return {prefix: obj}
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _show(value: Any) -> str:
    """A short form of a config or protocol value: hashes cut to 8 characters, long values to 40."""
    if isinstance(value, str):
        return value[:8] + ".." if _HEX.fullmatch(value) else value
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 40 else text[:38] + ".."


def _metric_cell(entry: dict[str, Any] | None, interval: bool = True) -> str:
    if not entry or not isinstance(entry.get("value"), (int, float)):
        return "-"
    if interval and isinstance(entry.get("ci_low"), (int, float)) and isinstance(entry.get("ci_high"), (int, float)):
        return f"{entry['value']:.4f} [{entry['ci_low']:.4f}, {entry['ci_high']:.4f}]"
    return f"{entry['value']:.4f}"


def _delta(is_reference: bool, value: float | None, ref: float | None) -> str:
    if is_reference:
        return "ref"
    if ref is None or ref == 0:
        return "n/a"
    return "-" if value is None else f"{(value / ref - 1) * 100:+.1f}%"
