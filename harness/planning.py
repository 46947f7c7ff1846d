"""What a run will do, printed before any heavy work: stages, example counts, settings, an estimate.

The method plans its own stages (:meth:`recbench.method.Method.stages`, asked in its worker), so
nothing here knows a task or a method. Each stage's time is estimated from, in order of trust:
its cost measured on this machine by an earlier run (``$RECBENCH_HOME/stage-costs.json``, keyed
by task, dataset and the stage's ``cost_key``), the method's documented per-unit cost, or nothing
("unknown"). While the run goes, :class:`StageBars` draws a bar with ETA per stage the method
reports (:mod:`recbench.progress`), calls the ``recbench_stage_progress`` hook and records what
each stage cost, so the next plan is measured rather than documented.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbench.method import FitSummary, Stage

CPU_WARNING_S = 3600.0  # an estimate this long on a CPU gets a warning with a smaller test set
TRY_FIRST_S = 600.0  # the test set the warning suggests answers in about this long


def fit_summary(data: Any) -> FitSummary:
    """The counts a method plans from: no rows, no targets."""
    fit = data.fit
    return FitSummary(
        train_interactions=len(fit.train), train_examples=len(fit.train_examples) if fit.train_examples is not None else 0,
        valid_examples=len(fit.valid) if fit.valid is not None else 0, test_examples=len(data.test_inputs),
        n_items=fit.catalog.n_items,
    )


class CostBook:
    """Seconds per unit of each stage, as last measured on this machine."""

    def __init__(self, path: Path | None = None) -> None:
        from recbench.data.store import recbench_home

        self.path = path or recbench_home() / "stage-costs.json"

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, key: str, seconds_per_unit: float) -> None:
        from recbench.results import atomic_write_text, now_iso

        costs = self.read()
        costs[key] = {"seconds_per_unit": round(seconds_per_unit, 6), "measured_at": now_iso()}
        atomic_write_text(self.path, json.dumps(costs, indent=1, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    basis: str  # "measured here <date>", the method's documented basis, or "unknown"


@dataclass(frozen=True)
class Preview:
    """A run's plan: what runs, on what data, through which stages, and about how long it takes."""

    task: str
    method: str
    dataset: str
    seed: int
    summary: FitSummary
    settings: dict[str, Any]
    stages: list[Stage]
    estimates: list[Estimate]
    stored: bool = False  # a result of this exact run exists: a run is answered from it
    run_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float | None:
        known = [e.seconds for e in self.estimates if e.seconds is not None]
        return sum(known) if known else None

    def render(self) -> str:
        s = self.summary
        settings = "  ".join(f"{k}={_value(v)}" for k, v in self.settings.items()) or "(defaults)"
        lines = [f"plan: {self.method} on {self.task} (dataset {self.dataset}, seed {self.seed}, run {self.run_id})",
                 f"  examples: {s.train_examples:,} train, {s.valid_examples:,} valid, {s.test_examples:,} test "
                 f"({s.train_interactions:,} training interactions, {s.n_items:,} items)",
                 f"  method:   {settings}", "  stages:"]
        width = max((len(st.name) for st in self.stages), default=0)
        for i, (st, est) in enumerate(zip(self.stages, self.estimates), 1):
            units = f"{st.units:,} {st.unit}" + ("s" if st.units != 1 and st.unit in ("step", "run") else "")
            lines.append(f"    {i}. {st.name:<{width}}  {units:>12}  {_duration(est.seconds):>9}  {est.basis}")
        unknown = sum(e.seconds is None for e in self.estimates)
        total = self.total_s
        lines.append(f"  estimate: {_duration(total) if total is not None else 'unknown'}"
                     + (f" (+ {unknown} stage(s) without an estimate)" if unknown and total is not None else ""))
        if self.stored:
            lines.append("  a result of this exact run exists: `recbench run` answers from it (--force recomputes)")
        warning = self.warning()
        return "\n".join(lines + self.notes + ([warning] if warning else []))

    def warning(self) -> str | None:
        """On a CPU, an estimate that runs to hours names a smaller test set to try first."""
        total = self.total_s
        if total is None or total < CPU_WARNING_S or str(self.settings.get("device", "cpu")) != "cpu":
            return None
        predict = [(st, e) for st, e in zip(self.stages, self.estimates) if st.phase == "predict" and e.seconds]
        text = f"  warning: on a CPU this run takes about {_duration(total)}"
        if not predict or not predict[0][0].units:
            return text + "."
        stage, est = predict[0]
        per_example = est.seconds / stage.units
        n = max(1, min(stage.units - 1, int(TRY_FIRST_S / per_example)))
        fit_s = total - est.seconds
        return (f"{text}, {_duration(est.seconds)} of it answering {stage.units:,} test examples. Try fewer first: "
                f"--set task.max_test_examples={n} (test about {_duration(n * per_example)}, "
                f"the whole run about {_duration(fit_s + n * per_example)}).")


def announce(preview: Preview, quiet: bool) -> None:
    """The plan on stderr before the run's heavy work; with ``--quiet``, only a warning."""
    text = preview.warning() if quiet else preview.render()
    if text:
        print(text, file=sys.stderr, flush=True)


def estimate(stages: list[Stage], where: str, book: CostBook) -> list[Estimate]:
    """Each stage's seconds; ``where`` (``task:dataset``) keys the costs measured here."""
    measured = book.read()
    out = []
    for st in stages:
        seen = measured.get(f"{where}:{st.cost_key}") if st.cost_key else None
        if seen is not None:
            out.append(Estimate(seen["seconds_per_unit"] * st.units, f"measured here {seen['measured_at'][:10]}"))
        elif st.seconds_per_unit is not None:
            out.append(Estimate(st.seconds_per_unit * st.units, st.basis or "the method's estimate"))
        else:
            out.append(Estimate(None, "unknown: not measured here yet"))
    return out


class StageBars:
    """The runner's side of a method's stage reports: a bar each, the hook, and each stage's measured cost."""

    def __init__(self, run: Any, preview: Preview, hook: Any, quiet: bool, book: CostBook | None = None) -> None:
        self.run, self.preview, self.hook, self.quiet = run, preview, hook, quiet
        self.book = book or CostBook()
        self.bars: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.index: dict[str, int] = {}
        self.reported = False

    def label(self, name: str) -> str:
        """``[i/n] name`` for a planned stage (the first not yet begun of that name), else the name."""
        if name not in self.index:
            taken = set(self.index.values())
            for i, st in enumerate(self.preview.stages):
                if st.name == name and i not in taken:
                    self.index[name] = i
                    break
        i = self.index.get(name)
        return name if i is None else f"[{i + 1}/{len(self.preview.stages)}] {name}"

    def handle(self, event: Any) -> None:
        self.reported = True
        self.hook(run=self.run, stage=event.name, done=event.done, total=event.total, unit=event.unit, state=event.state)
        if event.state == "start":
            self.started[event.name] = time.monotonic()
            self._open(event)
        bar = self.bars.get(event.name)
        if bar is not None:
            bar.total = max(event.total, event.done)
            bar.n = event.done
            if event.note:
                bar.set_postfix_str(event.note, refresh=False)
            bar.refresh()
        if event.state == "end":
            self._finish(event)

    def _open(self, event: Any) -> None:
        label = self.label(event.name)
        if not self.quiet:
            from tqdm.auto import tqdm

            self.bars[event.name] = tqdm(total=event.total, desc=label, unit=event.unit, file=sys.stderr)

    def _finish(self, event: Any) -> None:
        bar = self.bars.pop(event.name, None)
        if bar is not None:
            bar.close()
        elapsed = time.monotonic() - self.started.pop(event.name, time.monotonic())
        i = self.index.pop(event.name, None)
        if i is not None and event.done > 0 and event.note != "reused" and elapsed > 0:
            self.measured(self.preview.stages[i], elapsed / event.done)

    def measured(self, stage: Stage, seconds_per_unit: float) -> None:
        if stage.cost_key:
            self.book.record(f"{self.preview.task}:{self.preview.dataset}:{stage.cost_key}", seconds_per_unit)

    def finish(self, fit_s: float, predict_s: float) -> None:
        """Record what the runner itself timed: the test stage, and a fit the method did not report on."""
        fit_stages = [st for st in self.preview.stages if st.phase == "fit"]
        if not self.reported and len(fit_stages) == 1 and fit_stages[0].units:
            self.measured(fit_stages[0], fit_s / fit_stages[0].units)
        for st in self.preview.stages:
            if st.phase == "predict" and st.units:
                self.measured(st, predict_s / st.units)
        for bar in self.bars.values():
            bar.close()

    def predict_label(self, default: str) -> str:
        for i, st in enumerate(self.preview.stages):
            if st.phase == "predict":
                return f"[{i + 1}/{len(self.preview.stages)}] {st.name}"
        return default


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
