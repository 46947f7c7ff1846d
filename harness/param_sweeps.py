"""Parameter sweeps: a task spec's figures of one metric against one task parameter (the LangPTune
paper's Figure 3, NDCG against the fraction of training data kept).

A task spec lists them under ``[[param_sweeps]]``::

    [[param_sweeps]]
    title = "training-data ratio (the LangPTune paper's Figure 3)"
    param = "train_fraction"        # a parameter of the task kind (tasks/<kind>.py Params)
    methods = ["emb_cl", "sasrec"]
    metric = "ndcg@20"              # default: the task's primary metric
    values = [0.2, 0.4, 0.6, 0.8]   # values to propose a command for while they have no run

The points are found in the results, not listed: a run belongs to the sweep when its protocol is the
task's default one except ``param`` (same task version, dataset and content, filters, tie rule and
seed, no test subsample, every other parameter at its default). The split and contract descriptions
are left out of that comparison because, within one task version, they follow from the parameters
(the swept one among them). The default run is the point at the default value. Each method keeps one
config (the one with runs at the most values; ties: the newest) and each (method, value) point is
the mean over that config's seeds. ``sweep`` (:mod:`recbench.sweep`) is another thing: many runs
submitted to an executor.

:mod:`recbench.leaderboard` renders each sweep as a section: a line plot, the numbers, and the
command of every point, then the commands of the proposed values not run yet.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbench.errors import RegistrationError
from recbench.hashing import stable_hash

KEYS = ("title", "param", "methods", "metric", "values")
UNSHAPED = ("fingerprint", "params", "split", "contract")  # protocol keys a parameter change may move


@dataclass(frozen=True)
class ParamSweep:
    title: str
    param: str
    methods: tuple[str, ...]
    metric: str | None = None  # None: the task's primary metric
    values: tuple[Any, ...] = ()  # proposed values: a command is printed for each one without a run

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ParamSweep:
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise RegistrationError(f"{where}: param_sweeps keys {unknown} are not known; valid keys: {sorted(KEYS)}.")
        if not raw.get("title") or not raw.get("param") or not raw.get("methods"):
            raise RegistrationError(f"{where}: a param sweep needs a title, a param and a non-empty methods list; got {raw!r}.")
        if not isinstance(raw.get("values", []), list):
            raise RegistrationError(f"{where}: param sweep {raw['title']!r}: values must be a list, got {raw['values']!r}.")
        return cls(title=str(raw["title"]), param=str(raw["param"]), methods=tuple(raw["methods"]),
                   metric=raw.get("metric"), values=tuple(raw.get("values") or ()))


def default_protocol(spec: Any, kind: type) -> dict[str, Any]:
    """The protocol keys of the task's default run: its version, its default dataset and its kind's
    parameters as results record them (the spec's ``[params]`` over the kind's defaults)."""
    from recbench.config import config_to_dict

    return {"task_version": spec.version, "dataset": spec.dataset, "params": config_to_dict(kind(spec).params)}


@dataclass(frozen=True)
class SweepPoint:
    method: str
    value: Any
    mean: float
    runs: tuple[dict[str, Any], ...]  # the runs averaged (one per seed), newest first

    @property
    def command(self) -> str | None:
        """The newest run's recorded command (another seed's differs only in ``--seed``)."""
        return self.runs[0].get("command")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _order(value: Any) -> tuple[int, Any]:
    value = _number(value)
    return (0, value) if isinstance(value, float) else (1, str(value))


def _metric(doc: dict[str, Any], metric: str) -> float | None:
    value = (doc["metrics"].get(metric) or {}).get("value")
    return float(value) if isinstance(value, (int, float)) and value == value else None


def sweep_points(sweep: ParamSweep, docs: list[dict[str, Any]], defaults: dict[str, Any],
                 metric: str) -> tuple[list[SweepPoint], int]:
    """The sweep's points in ``docs`` (method order, then value order) and how many runs of its
    methods were left out for holding another config than the one kept."""
    others = {k: v for k, v in defaults["params"].items() if k != sweep.param}

    def candidate(doc: dict[str, Any]) -> bool:
        p = doc["protocol"]
        params = p.get("params") or {}
        return (doc["method"]["name"] in sweep.methods and _metric(doc, metric) is not None
                and p.get("task_version") == defaults["task_version"] and p.get("dataset") == defaults["dataset"]
                and not p.get("tie_seed") and "test_subsample" not in p and sweep.param in params
                and {k: v for k, v in params.items() if k != sweep.param} == others)

    def identity(doc: dict[str, Any]) -> str:  # what must be equal beyond the parameters: dataset content, filters, ...
        return stable_hash({k: v for k, v in doc["protocol"].items() if k not in UNSHAPED})

    found = sorted((d for d in docs if candidate(d)), key=lambda d: (d.get("created_at") or "", d["run_id"]), reverse=True)
    if not found:
        return [], 0
    at_default = [d for d in found if _number(d["protocol"]["params"][sweep.param]) == _number(defaults["params"][sweep.param])]
    anchor = identity((at_default or found)[0])  # the newest default run's dataset content, else the newest run's
    found = [d for d in found if identity(d) == anchor]
    points, left_out = [], 0
    for method in sweep.methods:
        mine = [d for d in found if d["method"]["name"] == method]
        by_config: dict[str, list[dict[str, Any]]] = {}
        for doc in mine:  # newest first, so a config's first run is its newest
            by_config.setdefault(stable_hash(doc["method"].get("config") or {}), []).append(doc)
        if not by_config:
            continue
        kept = max(by_config.values(), key=lambda runs: (len({repr(_number(d["protocol"]["params"][sweep.param]))
                                                             for d in runs}), runs[0].get("created_at") or ""))
        left_out += len(mine) - len(kept)
        by_value: dict[str, list[dict[str, Any]]] = {}
        for doc in kept:
            by_value.setdefault(repr(_number(doc["protocol"]["params"][sweep.param])), []).append(doc)
        for runs in sorted(by_value.values(), key=lambda runs: _order(runs[0]["protocol"]["params"][sweep.param])):
            values = [_metric(d, metric) for d in runs]
            points.append(SweepPoint(method, runs[0]["protocol"]["params"][sweep.param], sum(values) / len(values), tuple(runs)))
    return points, left_out


def swept_protocols(sweeps: Sequence[ParamSweep], docs: list[dict[str, Any]], defaults: dict[str, Any] | None,
                    metric: str) -> set[str]:
    """Fingerprints of the protocols that only hold sweep points off the default value: their runs are
    the sweeps' figures, not leaderboards of their own (a table per ``train_fraction`` would rank one
    or two methods against nothing)."""
    if not sweeps or defaults is None:
        return set()
    off_default: set[str] = set()
    for sweep in sweeps:
        points, _ = sweep_points(sweep, docs, defaults, metric)
        default = _number(defaults["params"][sweep.param])
        off_default |= {run["run_id"] for point in points if _number(point.value) != default for run in point.runs}
    by_protocol: dict[str, list[str]] = {}
    for doc in docs:
        by_protocol.setdefault(doc["protocol"]["fingerprint"], []).append(doc["run_id"])
    return {fp for fp, runs in by_protocol.items() if all(run in off_default for run in runs)}


def sweep_section(sweep: ParamSweep, docs: list[dict[str, Any]], defaults: dict[str, Any], task: str,
                  primary_metric: str, out_dir: Path | None) -> list[str]:
    """A sweep's Markdown section: plot (when ``out_dir`` is given), numbers and commands."""
    from tabulate import tabulate

    metric = sweep.metric or primary_metric
    default = defaults["params"].get(sweep.param)
    points, left_out = sweep_points(sweep, docs, defaults, metric)
    lines = ["", f"## Parameter sweep: {sweep.title}", "",
             f"{metric} against the task parameter `{sweep.param}` (default {_show(default)}), for "
             f"{', '.join(f'`{m}`' for m in sweep.methods)}: the runs whose protocol is the default one except "
             f"`{sweep.param}`, each point the mean over the seeds of one config of the method."]
    swept = [p for p in points if _number(p.value) != _number(default)]
    if not swept:
        lines += ["", f"No run differs from the default protocol in `{sweep.param}` alone yet, so there is no curve."]
    if swept and out_dir is not None:
        plot = _plot(sweep, points, metric, default, task, Path(out_dir))
        lines += ["", f"![{metric} against {sweep.param}]({plot.relative_to(Path(out_dir)).as_posix()})"]
    if points:
        cells = [[p.method, _show(p.value) + (" (default)" if _number(p.value) == _number(default) else ""),
                  f"{p.mean:.4f}", ", ".join(str(d.get("seed")) for d in sorted(p.runs, key=lambda d: str(d.get("seed")))),
                  f"`{p.command}`" if p.command else "-"] for p in points]
        lines += ["", tabulate([[c.replace("|", "\\|") for c in line] for line in cells],
                               headers=["method", sweep.param, metric, "seeds", "command"], tablefmt="github",
                               disable_numparse=True)]
    if left_out:
        lines += ["", f"{left_out} run(s) of these methods hold another config than the one kept per method and are "
                      "left out of the curve."]
    missing = _missing(sweep, points, default)
    if missing:
        lines += ["", "Not run yet (proposed values of the task spec):" if swept else "Produce the points with:", ""]
        lines += [f"- `{command}`" for command in _commands(task, sweep.param, missing)]
    return lines


def _missing(sweep: ParamSweep, points: list[SweepPoint], default: Any) -> dict[Any, list[str]]:
    """Proposed value -> the methods without a point there (default value excluded: its runs are the leaderboard's)."""
    have = {(p.method, repr(_number(p.value))) for p in points}
    missing: dict[Any, list[str]] = {}
    for value in sorted(sweep.values, key=_order):
        if _number(value) == _number(default):
            continue
        methods = [m for m in sweep.methods if (m, repr(_number(value))) not in have]
        if methods:
            missing[value] = methods
    return missing


def _commands(task: str, param: str, missing: dict[Any, list[str]]) -> list[str]:
    return [shlex.join(["recbench", "run", "--task", task, "--method", ",".join(methods), "--set", f"task.{param}={value}"])
            for value, methods in missing.items()]


def _plot(sweep: ParamSweep, points: list[SweepPoint], metric: str, default: Any, task: str, out_dir: Path) -> Path:
    """One line per method of ``metric`` against the parameter; named after what it shows, drawn once."""
    from recbench.leaderboard_sections import _figure, _save

    shown = [(p.method, _number(p.value), round(p.mean, 6)) for p in points]
    path = out_dir / "plots" / f"{task}-sweep-{sweep.param}-{stable_hash([sweep.title, metric, shown], 10)}.png"
    if path.is_file():
        return path
    figure = _figure(5.5, 3.6, dpi=100)
    axes = figure.add_subplot()
    numeric = all(isinstance(x, float) for _, x, _ in shown)
    for method in sweep.methods:
        line = [(x, y) for m, x, y in shown if m == method]
        if line:
            xs = [x for x, _ in line] if numeric else [str(x) for x, _ in line]
            axes.plot(xs, [y for _, y in line], marker="o", linewidth=1.2, markersize=4, label=method)
    if numeric and isinstance(_number(default), float):
        axes.axvline(_number(default), color="#999999", linewidth=0.8, linestyle=":", label=f"default ({_show(default)})")
    axes.set_xlabel(sweep.param, fontsize=9)
    axes.set_ylabel(metric, fontsize=9)
    axes.set_title(sweep.title, fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def _show(value: Any) -> str:
    return str(value) if not isinstance(value, (list, dict)) else repr(value)
