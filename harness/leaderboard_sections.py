"""What a reviewer asks of a leaderboard row, computed from the results files alone.

- :func:`row_flags`: a row above the task's ceiling (the oracle row, or a bounded metric's maximum),
  recorded from a dirty tree or with ``--in-process``, from a third-party plugin (named), or an LLM
  row where most replies named no valid answer (its value is mostly how the task reads an unreadable reply).
- :func:`paired_tests`: each row against the protocol's reference row on the same examples
  (:mod:`recbench.stats`: paired bootstrap CI, sign-flip p-value, Holm across the table's rows).
- :func:`seed_section`: rows that differ only by seed, as mean ± sd across seeds.
- :func:`details_section`: commands, plugins, isolation and times, out of the main table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from recbench.hashing import stable_hash
from recbench.metrics import parse_metric_name
from recbench.stats import PairedDifference, holm, mean_sd, paired_difference

BOUNDED = frozenset({"hr", "ndcg", "recall", "precision", "mrr", "accuracy"})  # families whose maximum is 1
INCOMPLETE = "_examples_problem"  # set in memory on a result whose per-example file cannot back it; never written
FLAG_LEGEND = {
    "above ceiling": "a value above the oracle row or at the metric's maximum: check the method for leaked targets",
    "in-process": "run with --in-process (or before worker isolation): the method shared memory with the targets",
    "dirty tree": "recorded from a git tree with uncommitted changes: the commit alone does not reproduce it",
    "plugin": "a third-party plugin package, named with its version",
    "examples missing": "its per-example file is missing or changed since the run: the Notes say how to restore it",
    "fallback answers": "under half of the model's replies named a valid answer (`valid_output_rate`); the rest count as the "
                        "task reads an unreadable reply (candidates in their shown order, or an empty list), so the value "
                        "measures that more than the model",
    "no RL signal": "in every RL training step all sampled replies of each prompt scored alike (`frac_reward_zero_std` "
                    "1.0), so the reward gave the update nothing to follow: the row shows its untrained start",
}
FALLBACK_BELOW = 0.5  # valid_output_rate under which a row is flagged "fallback answers"


def isolation(doc: dict[str, Any]) -> str:
    return ((doc.get("execution") or {}).get("isolation")) or "in-process"


def row_flags(doc: dict[str, Any], ceilings: dict[str, float], metrics: Sequence[str]) -> list[str]:
    """Short flags for one row; ``ceilings`` maps metric -> the oracle row's value in this table."""
    flags = []
    for metric in metrics:
        entry = doc["metrics"].get(metric) or {}
        value = entry.get("value")
        if not isinstance(value, (int, float)):
            continue
        family = parse_metric_name(metric)[0]
        higher = entry.get("higher_is_better", True)
        above_oracle = metric in ceilings and (value > ceilings[metric] + 1e-12 if higher else value < ceilings[metric] - 1e-12)
        # a perfect score is suspect unless the task's own oracle row reaches it too (a learnable task)
        if above_oracle or (family in BOUNDED and value >= 1.0 - 1e-12 and metric not in ceilings):
            flags.append(f"above ceiling ({metric})")
            break
    if isolation(doc) != "worker":
        flags.append("in-process")
    if ((doc.get("environment") or {}).get("git") or {}).get("dirty"):
        flags.append("dirty tree")
    if doc.get(INCOMPLETE):
        flags.append("examples missing")
    plugin = str(doc["method"].get("plugin") or "")
    if plugin and "built-in" not in plugin:
        flags.append(f"plugin: {plugin}")
    valid = (doc.get("diagnostics") or {}).get("valid_output_rate")
    if isinstance(valid, (int, float)) and valid < FALLBACK_BELOW:
        flags.append(f"fallback answers ({1 - valid:.0%})")
    for label, curve in training_curves(doc):
        shares = [q["frac_reward_zero_std"] for q in curve if isinstance(q.get("frac_reward_zero_std"), (int, float))]
        if shares and min(shares) >= 1.0:
            flags.append(f"no RL signal{f' ({label.strip()})' if label else ''}")
    return flags


def ceiling_values(ceiling_docs: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for doc in ceiling_docs:
        for metric, entry in doc["metrics"].items():
            if isinstance(entry.get("value"), (int, float)):
                values[metric] = float(entry["value"])
    return values


def metric_values(rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """``key -> value`` of one metric over a run's per-example rows."""
    values = {}
    for row in rows:
        value = (row.get("metrics") or {}).get(metric)
        if value is not None:
            values[str(row["key"])] = float(value)
    return values


def paired_tests(rows: list[Any], ref_rows: list[Any], metric: str, examples_of) -> dict[str, PairedDifference]:
    """``run id -> PairedDifference`` of each non-reference row against the reference row of the same
    seed (else the first), on the examples both scored; Holm-adjusted across the rows."""
    if not ref_rows or parse_metric_name(metric)[0] == "snips":  # a ratio of sums: not a mean of pairs
        return {}
    ref_ids = {r.doc["run_id"] for r in ref_rows}
    ref_values = {r.doc["run_id"]: examples_of(r.doc, metric) for r in ref_rows}
    found: dict[str, PairedDifference] = {}
    for row in rows:
        if row.doc["run_id"] in ref_ids or row.ceiling:
            continue
        ref = next((r for r in ref_rows if r.doc.get("seed") == row.doc.get("seed")), ref_rows[0])
        mine, theirs = examples_of(row.doc, metric), ref_values[ref.doc["run_id"]]
        keys = sorted(set(mine) & set(theirs))
        if len(keys) < 2:
            continue
        found[row.doc["run_id"]] = paired_difference([mine[k] for k in keys], [theirs[k] for k in keys])
    adjusted = holm([d.p_value for d in found.values()])
    return {run_id: PairedDifference(d.mean, d.ci_low, d.ci_high, d.p_value, d.n, p)
            for (run_id, d), p in zip(found.items(), adjusted)}


def paired_cell(diff: PairedDifference | None, is_reference: bool) -> str:
    if is_reference:
        return "ref"
    if diff is None:
        return "-"
    return f"{diff.mean:+.4f}" + ("" if diff.significant else " (n.s.)")


def paired_section(rows: list[Any], tests: dict[str, PairedDifference], metric: str, reference: str) -> list[str]:
    if not tests:
        return []
    cells = []
    for row in rows:
        diff = tests.get(row.doc["run_id"])
        if diff is None:
            continue
        cells.append([row.label, f"{diff.mean:+.4f}", f"[{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]", f"{diff.p_value:.4f}",
                      f"{diff.p_holm:.4f}", "yes" if diff.significant else "no (n.s.)", str(diff.n)])
    headers = ["row", f"Δ {metric}", "95% CI (paired bootstrap)", "p (sign-flip)", "p (Holm)", "significant at 0.05", "pairs"]
    return ["", f"Paired differences vs `{reference}` on the same examples (row minus reference; 2,000 resamples; Holm "
            "across this table's rows):", "", _table(cells, headers)]


def seed_section(rows: list[Any], metrics: Sequence[str]) -> list[str]:
    """One line per method and config run with several seeds: mean ± sd of each metric."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if not row.ceiling:
            key = (row.method, json.dumps(row.doc["method"].get("config") or {}, sort_keys=True))
            groups.setdefault(key, []).append(row)
    cells = []
    for (method, _), same in groups.items():
        seeds = sorted(r.doc.get("seed") for r in same)
        if len(seeds) < 2:
            continue
        label = same[0].label.replace(f", seed {same[0].doc.get('seed')}", "").replace(f" (seed {same[0].doc.get('seed')})", "")
        line = [label, ", ".join(map(str, seeds))]
        for metric in metrics:
            values = [v for v in (r.value(metric) for r in same) if v is not None]
            line.append(_mean_sd(values) if len(values) == len(same) else "-")
        cells.append(line)
    if not cells:
        return []
    return ["", "Across seeds (mean ± sample sd; each seed's own row and 95% interval are in the table above):", "",
            _table(cells, ["method", "seeds", *metrics])]


def details_section(rows: list[Any], intervals: list[list[str]] = (), metrics: Sequence[str] = ()) -> list[str]:
    """Collapsed: every metric with its interval, then each run's command, plugin, isolation and times."""
    lines = []
    if intervals:
        lines = ["", "<details><summary>Every metric with its 95% bootstrap interval</summary>", "",
                 _table(intervals, ["row", *metrics]), "", "</details>"]
    cells = []
    for row in rows:
        timing = row.doc.get("timing") or {}
        cells.append([row.label, f"`{row.doc['run_id']}`", str(row.doc["method"].get("plugin") or "-"), isolation(row.doc),
                      _seconds(timing.get("fit_s")), _seconds(timing.get("predict_s")), _gigabytes(timing.get("peak_memory_gb")),
                      f"`{row.doc['command']}`" if row.doc.get("command") else "-"])
    headers = ["row", "run id", "plugin", "isolation", "fit", "predict", "peak memory", "command"]
    return lines + ["", "<details><summary>Runs: commands, plugins, isolation, times and peak memory (resident, of "
                    "the method's process, where the run recorded it)</summary>", "",
                    _table(cells, headers), "", "</details>"]


def latency_section(rows: list[Any]) -> list[str]:
    """Mean inference time per test example of every row (the CURec paper's Table 4, for every method):
    the runner's predict time over the test examples, with the prediction batch and the hardware."""
    cells = []
    for row in rows:
        timing, n = row.doc.get("timing") or {}, row.doc.get("n_examples") or 0
        predict = timing.get("predict_s")
        if not isinstance(predict, (int, float)) or n <= 0:
            continue
        cells.append([row.label, _milliseconds(1000 * predict / n), str(timing.get("predict_batch") or "-"), str(n),
                      _hardware(row.doc.get("environment") or {})])
    if not cells:
        return []
    return ["", "Inference time per test example (predict time / test examples, on the hardware that ran it; fit time is "
            "under Runs below):", "", _table(cells, ["row", "ms / example", "batch", "examples", "hardware"])]


def _gigabytes(value: Any) -> str:
    return f"{value:.1f} GB" if isinstance(value, (int, float)) else "-"


def _milliseconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _hardware(environment: dict[str, Any]) -> str:
    hardware = environment.get("hardware") or {}
    gpu = hardware.get("gpu")
    cores = hardware.get("cpu_count")
    return f"GPU {gpu}" if gpu else f"CPU, {cores} cores" if cores else "-"


def flag_legend(used: set[str]) -> list[str]:
    shown = [f"*{name}*: {text}" for name, text in FLAG_LEGEND.items() if any(u.startswith(name) for u in used)]
    return ["", "Flags: " + "; ".join(shown) + "."] if shown else []


def _mean_sd(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.4f} ± {sd:.4f}"


def _table(cells: list[list[str]], headers: list[str]) -> str:
    return tabulate([[c.replace("|", "\\|") for c in line] for line in cells], headers=headers, tablefmt="github",
                    disable_numparse=True)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if value < 60:
        return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"
    return f"{value / 60:.1f}min" if value < 3600 else f"{value / 3600:.1f}h"


def option_plots(docs: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """One figure of the accuracy-by-option plots (the artwork paper's Figure 2) of every run in
    ``docs`` that reports one, a panel per run; named after those run ids, drawn once."""
    runs = [(d, rows) for d in docs if (rows := (d.get("reports") or {}).get("accuracy_by_option"))]
    if not runs:
        return None
    path = out_dir / "plots" / f"{runs[0][0]['task']['name']}-by-option-{stable_hash(sorted(d['run_id'] for d, _ in runs), 12)}.png"
    if path.is_file():
        return path
    columns = 2 if len(runs) > 1 else 1
    lines = -(-len(runs) // columns)
    figure = _figure(6 * columns, 2.6 * lines, dpi=90)
    for number, (doc, rows) in enumerate(runs, 1):
        axes = figure.add_subplot(lines, columns, number)
        x = [r["option"] for r in rows]
        axes.bar(x, [r["accuracy"] for r in rows], color="#4c72b0", label="accuracy")
        axes.plot(x, [r["chance"] for r in rows], color="#dd8452", marker=".", markersize=3, label="chance (1/m)")
        axes.set_ylim(0, 1.05)
        examples = sum(r["count"] for r in rows)
        axes.set_title(f"{doc['method']['name']} ({doc['run_id'][:6]}), {examples:,} examples", fontsize=8)
        axes.tick_params(labelsize=7)
        if number == 1:
            axes.legend(loc="upper right", fontsize=7)
    figure.supxlabel("ground-truth option number", fontsize=8)
    figure.supylabel("accuracy", fontsize=8)
    return _save(figure, path)


def comparison_plot(task: str, fingerprint: str, metric: str, points: list[tuple[str, float, float, float]],
                    out_dir: Path) -> Path | None:
    """Every ranked row's ``metric`` with its 95% interval, best first (``points``: label, value, low, high);
    named after what it shows, so a changed table gets a new file."""
    if not points:
        return None
    path = out_dir / "plots" / f"{task}-{fingerprint[:12]}-{stable_hash([metric, points], 10)}.png"
    if path.is_file():
        return path
    figure = _figure(7, 0.9 + 0.28 * len(points), dpi=90)
    axes = figure.add_subplot()
    y = list(range(len(points)))[::-1]  # the first row on top
    values = [p[1] for p in points]
    errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
    axes.errorbar(values, y, xerr=errors, fmt="o", color="#4c72b0", ecolor="#8aa4c8", capsize=2, markersize=4)
    axes.set_yticks(y, [p[0] for p in points], fontsize=7)
    axes.set_xlabel(f"{metric} (95% bootstrap interval)", fontsize=8)
    axes.tick_params(axis="x", labelsize=7)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def training_curves(doc: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """A run's training curves: ``method.fitted.curve``, the ``curve`` of each stage section of
    ``method.fitted`` (e.g. CURec's ``alignment`` and ``correction``), each ``<stage>_curve`` list of
    points and each ``<stage>_loss`` list of numbers (LangPTune's ``rlso_curve``, ``infonce_loss``),
    labelled by stage; points without a ``step`` are numbered in order."""
    fitted = (doc.get("method") or {}).get("fitted") or {}
    found = [("", fitted.get("curve"))] + [(f" {k}", v.get("curve")) for k, v in fitted.items() if isinstance(v, dict)]
    found += [(f" {k.removesuffix('_curve')}", v) for k, v in fitted.items() if k.endswith("_curve")]
    found += [(f" {k.removesuffix('_loss')}", [{"loss": x} for x in v]) for k, v in fitted.items()
              if k.endswith("_loss") and isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)]
    return [(label, [{"step": i, **q} for i, q in enumerate(curve, 1)])
            for label, curve in found if isinstance(curve, list) and curve and all(isinstance(q, dict) for q in curve)]


def curves_plot(docs: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """One figure of the training curves of every run in ``docs`` that reports one (see
    :func:`training_curves`): loss, mean reward, and each named reward part (``rewards/<name>/mean``,
    e.g. format, legal, correct) in a panel of its own, a line per run and stage; drawn once."""
    runs, seen = [], set()
    for doc in docs:
        for label, curve in training_curves(doc):
            key = json.dumps([label, curve], sort_keys=True, default=str)
            if key not in seen:  # a stage several runs share (one cached checkpoint) is drawn once
                seen.add(key)
                runs.append((doc, label, curve))
    if not runs:
        return None
    path = out_dir / "plots" / f"{runs[0][0]['task']['name']}-curves-{stable_hash(sorted({d['run_id'] for d, _, _ in runs}), 12)}.png"
    if path.is_file():
        return path
    parts = sorted({k for _, _, curve in runs for q in curve for k in q if k.startswith("rewards/") and k.endswith("/mean")})
    keys = [k for k in ("loss", "reward", *parts) if any(k in q for _, _, curve in runs for q in curve)]
    if not keys:
        return None
    columns = min(len(keys), 3)
    lines = -(-len(keys) // columns)
    figure = _figure(5 * columns, 3.4 * lines, dpi=100)
    for i, key in enumerate(keys, 1):
        axes = figure.add_subplot(lines, columns, i)
        for doc, label, curve in runs:
            points = [(q["step"], q[key]) for q in curve if isinstance(q.get(key), (int, float))]
            if points:
                axes.plot(*zip(*points), linewidth=1, marker=".", markersize=3,
                          label=f"{doc['method']['name']}{label} ({doc['run_id'][:6]})")
        axes.set_xlabel("step")
        name = key.removeprefix("rewards/").removesuffix("/mean")
        axes.set_title(f"training {name} per step" if key in ("loss", "reward") else f"reward part: {name} (mean per step)", fontsize=10)
        axes.legend(fontsize=6)
    return _save(figure, path)


def _figure(width: float, height: float, dpi: int) -> Any:
    """A matplotlib figure drawn through the object API: no pyplot state, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
