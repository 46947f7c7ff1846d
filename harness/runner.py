"""The runner: builds a task, runs a method in its worker, checks its predictions, scores them, writes results.

The barrier between methods and test targets lives here. The runner prepares ``TaskData`` and
keeps ``TaskData.test_targets``, the full catalog and the scoring arrays in its own process; the
method runs in a worker process (:mod:`recbench.worker`) that receives ``TaskData.fit`` and
batches of ``TaskData.test_inputs`` only. Before fitting, the runner audits that no test target
reached the data a method sees; after predicting, that nothing wrote to the targets.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pluggy

from recbench.config import build_config, config_to_dict
from recbench.contracts import Contract
from recbench.data.catalog import Catalog
from recbench.data.store import apply_filters, get_catalog, recbench_home
from recbench.errors import ConfigError, RecbenchError, RegistrationError, TargetLeakError, UnsupportedTaskError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.hashing import hash_arrays
from recbench.manager import load_registry, plugin_source
from recbench.metrics import Outcome, evaluate, summarize_values
from recbench.planning import CostBook, Preview, StageBars, announce, estimate, fit_summary
from recbench.registry import Registry
from recbench.results import (
    ResultStore, SCHEMA, environment, examples_problem, make_run_id, method_code_of, now_iso, resolved_config,
)
from recbench.task import Task, TaskData
from recbench.worker import DEFAULT_BATCH_SIZE, IN_PROCESS, SESSIONS, WORKER, Limits  # noqa: F401 - DEFAULT_BATCH_SIZE re-exported

ORACLE = "oracle"  # the name of ceiling rows; never a registered method


@dataclass(frozen=True)
class RunRequest:
    task: str
    method: str
    dataset: str | None = None
    seed: int = 0
    method_settings: dict[str, Any] = field(default_factory=dict)  # file layer, then CLI layer applied
    cli_settings: dict[str, Any] = field(default_factory=dict)
    task_settings: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    quiet: bool = False
    isolation: str = WORKER  # or IN_PROCESS (--in-process): the method shares the runner's memory, for debugging
    timeout_s: float | None = None  # the method's fit plus predict, wall seconds (worker only)
    max_memory_gb: float | None = None  # the worker's address-space limit

    def __post_init__(self) -> None:
        if self.isolation not in SESSIONS:
            raise ConfigError(f"isolation must be one of {sorted(SESSIONS)}, got {self.isolation!r}.")


@dataclass(frozen=True)
class RunContext:
    """What lifecycle hooks see of a run."""

    task: str
    method: str
    dataset: str
    seed: int
    config: dict[str, Any]
    fingerprint: str
    run_id: str
    quiet: bool


@dataclass(frozen=True)
class RunPlan:
    """A resolved run: what will run, on which protocol, under which id."""

    task: Task
    method_cls: type
    config: Any
    catalog: Catalog
    protocol: dict[str, Any]
    run_id: str
    context: RunContext
    code: dict[str, Any]  # the method's code identity (results.method_code), part of the run id


@dataclass(frozen=True)
class RunOutcome:
    document: dict[str, Any]
    path: Path
    cached: bool


class Runner:
    def __init__(self, registry: Registry, pm: pluggy.PluginManager, store: ResultStore) -> None:
        self.registry, self.pm, self.store = registry, pm, store

    # --- preparation -----------------------------------------------------------------------

    def resolve(self, request: RunRequest) -> tuple[Task, type, Any, Catalog]:
        spec = self.registry.tasks.get(request.task)
        kind = self.registry.task_kinds.get(spec.kind)
        method_cls = self.registry.methods.get(request.method)
        if not kind.supported_by(method_cls):
            supported = [name for name, cls in sorted(self.registry.methods.entries.items()) if kind.supported_by(cls)]
            raise UnsupportedTaskError(
                f"method {request.method!r} does not support task {request.task!r}: the task needs contract "
                f"{kind.contract_kind!r} over {kind.candidate_table!r}, the method answers {sorted(method_cls.contracts)} "
                f"over {sorted(method_cls.candidate_tables)}. Methods for {request.task!r}: {', '.join(supported)}."
            )
        config = build_config(
            method_cls.Config, request.method_settings, request.cli_settings, owner=f"method {request.method!r} config"
        )
        task, catalog = task_and_catalog(self.registry, request.task, request.task_settings, dataset=request.dataset,
                                         quiet=request.quiet)
        check_metric_cutoffs(task)
        return task, method_cls, config, catalog

    def prepare(self, task: Task, catalog: Catalog, protocol: dict[str, Any]) -> TaskData:
        return prepare_task_data(task, catalog, protocol)

    # --- the run -------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunOutcome:
        """Plan, answer from a stored result or prepare the split, execute the method, score, record."""
        plan = self.plan(request)
        cached = None if request.force else self.stored(plan, request)
        if cached is not None:
            return cached
        session = self._session(plan, request)  # the worker boots (imports) while this process loads the split
        try:
            data = self.prepare(plan.task, plan.catalog, plan.protocol)
            plan.task.audit(data)
            preview = self._preview(plan, data, session, stored=False)
            announce(preview, request.quiet)
            self.pm.hook.recbench_run_started(run=plan.context)
            execution = self._execute(plan, data, session, preview, request.quiet)
        finally:
            session.close()
        evaluation, evaluate_s = self._score(plan, data, execution.items, request.seed)
        document = self._document(plan, request, data, execution, evaluation, evaluate_s)
        return self._record(plan, data, execution, evaluation, document)

    def plan(self, request: RunRequest) -> RunPlan:
        task, method_cls, config, catalog = self.resolve(request)
        protocol = task.protocol(catalog)
        config_dict = config_to_dict(config)
        code = method_code_of(method_cls, self._method_plugin(method_cls.name), also=[type(task).__module__])
        run_id = make_run_id(task.spec.name, protocol["fingerprint"], method_cls.name,
                             config_to_dict(resolved_config(config)), request.seed, code)
        context = RunContext(task.spec.name, method_cls.name, catalog.name, request.seed, config_dict,
                             protocol["fingerprint"], run_id, request.quiet)
        return RunPlan(task, method_cls, config, catalog, protocol, run_id, context, code)

    def preview(self, request: RunRequest) -> Preview:
        """What ``run`` would do (``recbench run --plan``): the data are prepared, the method only plans."""
        plan = self.plan(request)
        stored = not request.force and self.stored(plan, request) is not None
        session = self._session(plan, request)
        try:
            return self._preview(plan, self.prepare(plan.task, plan.catalog, plan.protocol), session, stored)
        finally:
            session.close()

    def _session(self, plan: RunPlan, request: RunRequest) -> Any:
        return SESSIONS[request.isolation](
            plan.method_cls, plan.config, request.seed, self.protected_paths(), Limits(request.timeout_s, request.max_memory_gb)
        )

    def _preview(self, plan: RunPlan, data: TaskData, session: Any, stored: bool) -> Preview:
        settings, stages = session.stages(fit_summary(data))
        c = plan.context
        return Preview(c.task, c.method, c.dataset, c.seed, fit_summary(data), settings, stages,
                       estimate(stages, f"{c.task}:{c.dataset}", CostBook()), stored=stored, run_id=c.run_id)

    def protected_paths(self) -> list[Path]:
        return protected_paths(self.store.root)

    def stored(self, plan: RunPlan, request: RunRequest) -> RunOutcome | None:
        """The stored result of this run; an in-process one does not answer an isolated request.

        A sweep on an executor asks this before submitting, so finished runs never become jobs."""
        name, method = plan.task.spec.name, plan.method_cls.name
        document = self.store.load(name, method, plan.run_id)
        if document is None or (request.isolation == WORKER and isolation_of(document) != WORKER):
            return None
        path = self.store.path(name, method, plan.run_id)
        problem = examples_problem(path, document)
        if problem:  # an incomplete entry is no answer: recompute, which rewrites both files
            print(f"recbench: the stored result {path} is incomplete: {problem}; running it again.", file=sys.stderr)
            return None
        return RunOutcome(document, path, cached=True)

    def _execute(self, plan: RunPlan, data: TaskData, session: Any, preview: Preview, quiet: bool) -> Execution:
        guard = targets_digest(data)
        hook = self.pm.hook.recbench_batch_scored
        total = len(data.test_inputs)
        stages = StageBars(plan.context, preview, self.pm.hook.recbench_stage_progress, quiet)
        session.on_progress = stages.handle  # the method's fit stages, reported from its worker
        with _progress(total, stages.predict_label(f"{plan.method_cls.name} on {plan.task.spec.name}"), quiet) as bar:
            def scored(offset: int, n: int) -> None:
                hook(run=plan.context, start=offset, stop=offset + n, total=total)
                bar.update(n)

            execution = execute(session, data.fit, data.test_inputs, plan.task.contract(), plan.method_cls.name, scored,
                                on_predict=bar.start)
        stages.finish(execution.fit_s, execution.predict_s)
        if targets_digest(data) != guard:
            raise TargetLeakError(
                f"the test targets changed while method {plan.method_cls.name!r} ran: method code wrote to runner "
                "memory (only possible with --in-process). The run is void; no result was written."
            )
        return execution

    def _score(self, plan: RunPlan, data: TaskData, items: np.ndarray, seed: int) -> tuple[Any, float]:
        start = time.perf_counter()
        outcome = Outcome.from_ranking(items, data.test_targets, extras=data.outcome)
        evaluation = evaluate(outcome, plan.task.spec.metrics, self.registry.metrics.entries, subsets=data.subsets, seed=seed)
        return evaluation, time.perf_counter() - start

    def _document(self, plan: RunPlan, request: RunRequest, data: TaskData, execution: Execution, evaluation: Any,
                  evaluate_s: float) -> dict[str, Any]:
        task, method_cls, n = plan.task, plan.method_cls, len(data.test_inputs)
        return {
            "schema": SCHEMA,
            "run_id": plan.run_id,
            "created_at": now_iso(),
            "command": reproduce_command(request, task, plan.catalog.name, method_cls, plan.config),
            "task": _task_section(task, data),
            "dataset": plan.catalog.summary(),
            "protocol": plan.protocol,
            "method": {
                "name": method_cls.name, "description": method_cls.description,
                "plugin": plan.code["plugin"], "code": plan.code, "config": plan.context.config,
                "fitted": execution.fitted,
            },
            "seed": request.seed,
            "n_examples": n,
            "primary_metric": task.spec.primary_metric,
            "metrics": evaluation.summary,
            "diagnostics": _weighted_diagnostics(execution.diagnostics),
            "timing": {
                "fit_s": round(execution.fit_s, 4), "predict_s": round(execution.predict_s, 4),
                "evaluate_s": round(evaluate_s, 4),
                "examples_per_s": round(n / execution.predict_s, 2) if execution.predict_s > 0 else None,
                "predict_batch": execution.batch, "peak_memory_gb": execution.peak_memory_gb,
            },
            "execution": {"isolation": execution.mode, "timeout_s": request.timeout_s,
                          "max_memory_gb": request.max_memory_gb},
            "environment": environment(),
        }

    def _record(self, plan: RunPlan, data: TaskData, execution: Execution, evaluation: Any,
                document: dict[str, Any]) -> RunOutcome:
        task, method, catalog = plan.task, plan.method_cls.name, plan.catalog
        report = task.report(data, execution.items, evaluation.per_example, self.store.path(task.spec.name, method, plan.run_id).parent)
        if report:
            plots = report.pop("plots", [])
            document["reports"] = report
            if plots:
                document["plots"] = [f"{task.spec.name}/{method}/{p}" for p in plots]  # relative to the results dir
        rows = example_rows(task.ids(catalog), catalog, data.test_inputs, data.test_targets, execution.items,
                            evaluation.per_example, execution.extras)
        path = self.store.write(document, rows)
        document = self.store.load(task.spec.name, method, plan.run_id) or document
        self.pm.hook.recbench_run_finished(run=plan.context, result=document)
        return RunOutcome(document, path, cached=False)

    def record_ceiling(self, request: RunRequest) -> RunOutcome:
        """Write the ``oracle`` row: the task's Bayes-optimal expected metrics, flagged as a ceiling."""
        task, catalog = task_and_catalog(self.registry, request.task, request.task_settings, dataset=request.dataset,
                                         quiet=request.quiet)
        spec = task.spec
        protocol = task.protocol(catalog)
        run_id = make_run_id(spec.name, protocol["fingerprint"], ORACLE, {}, 0)
        if not request.force and (cached := self.store.load(spec.name, ORACLE, run_id)) is not None:
            return RunOutcome(cached, self.store.path(spec.name, ORACLE, run_id), cached=True)
        data = self.prepare(task, catalog, protocol)
        expected = task.ceiling(data)
        if expected is None:
            raise RecbenchError(
                f"task {spec.name!r} has no known ceiling: its data do not come from a simulator that knows "
                "choice probabilities."
            )
        metrics = {name: summarize_values(values, seed=0) for name, values in expected.items()}
        command = shlex.join(["recbench", "ceiling", "--task", spec.name]
                             + (["--dataset", catalog.name] if request.dataset else [])
                             + [arg for k, v in sorted(request.task_settings.items()) for arg in ("--set", f"task.{k}={_cli_value(v)}")])
        document = {
            "schema": SCHEMA, "run_id": run_id, "created_at": now_iso(), "command": command, "ceiling": True,
            "task": _task_section(task, data),
            "dataset": catalog.summary(), "protocol": protocol,
            "method": {"name": ORACLE, "description": "Bayes-optimal choice under the simulator's known probabilities (a ceiling, not a method)",
                       "plugin": "recbench (built-in)", "config": {}, "fitted": {}},
            "seed": 0, "n_examples": len(data.test_inputs), "primary_metric": spec.primary_metric,
            "metrics": metrics, "diagnostics": {}, "timing": {"fit_s": 0.0, "predict_s": 0.0, "evaluate_s": 0.0},
            "environment": environment(),
        }
        path = self.store.write(document, [])
        return RunOutcome(self.store.load(spec.name, ORACLE, run_id) or document, path, cached=False)

    def _method_plugin(self, name: str) -> str:
        source = self.registry.methods.sources[name]
        plugin = self.pm.get_plugin(source)
        return plugin_source(self.pm, plugin) if plugin is not None else source


def check_metric_cutoffs(task: Task) -> None:
    """A metric cutoff above the number of items a prediction holds is a configuration error."""
    from recbench.metrics import parse_metric_name

    k = task.contract().k
    for name in task.spec.metrics:
        cutoff = parse_metric_name(name)[1]
        if cutoff is not None and cutoff > k:
            raise ConfigError(
                f"task {task.spec.name!r}: metric {name!r} needs {cutoff} ranked items but predictions hold {k} "
                f"(task parameter k / n_candidates). Raise it, e.g. --set task.k={cutoff}, or drop the metric."
            )


def protected_paths(results_root: Path) -> list[Path]:
    """What method code may not open: split and dataset caches, and the results folder."""
    home = recbench_home()
    return [home / "splits", home / "datasets", Path(results_root)]


def task_and_catalog(registry: Registry, name: str, settings: dict[str, Any], *, dataset: str | None = None,
                     quiet: bool = False) -> tuple[Task, Catalog]:
    """Task ``name`` with ``settings``, and its dataset's catalog, filtered and tie-seeded as every run sees it."""
    spec = registry.tasks.get(name)
    if dataset:
        spec = replace(spec, dataset=dataset)
    catalog = apply_filters(get_catalog(registry.datasets.get(spec.dataset), quiet=quiet), list(spec.filters))
    task = registry.task_kinds.get(spec.kind)(spec, settings)
    return task, catalog.with_tie_seed(task.common.tie_seed)


def load_task_data(name: str, settings: dict[str, Any] | None = None) -> TaskData:
    """Task ``name``'s data as ``recbench run`` prepares it (the same split cache), for benches and notebooks."""
    task, catalog = task_and_catalog(load_registry(), name, settings or {})
    return prepare_task_data(task, catalog, task.protocol(catalog))


def prepare_task_data(task: Task, catalog: Catalog, protocol: dict[str, Any]) -> TaskData:
    """Build the task's data, cached on disk by protocol fingerprint and split code (verified on load)."""
    from recbench.split_cache import load_or_build

    data = load_or_build(task, catalog, protocol)
    check_unique_keys(task, data.test_inputs)
    return data


def check_unique_keys(task: Task, inputs: ExampleSet) -> None:
    """Every test example needs its own key: per-example files, paired tests and caches are keyed by it."""
    keys, counts = np.unique(np.asarray(inputs.keys, dtype=str), return_counts=True)
    if len(keys) < len(inputs):
        repeated = [str(k) for k in keys[counts > 1][:5]]
        raise RegistrationError(
            f"task {task.spec.name!r} (kind {task.spec.kind!r}) gives {len(inputs) - len(keys)} test example(s) a key "
            f"another one has (e.g. {repeated}); the kind's build() must give each example its own key."
        )


@dataclass(frozen=True)
class Execution:
    """What a method's session produced: checked rankings and what came with them."""

    items: np.ndarray
    extras: list[dict[str, Any]]
    diagnostics: list[tuple[int, dict[str, float]]]
    fitted: dict[str, Any]
    fit_s: float
    predict_s: float
    mode: str
    batch: int = 0  # examples per predict call
    peak_memory_gb: float | None = None  # the method's process at its largest (resident set), fit and predict


def execute(session: Any, fit: FitData, inputs: ExampleSet, contract: Contract, method: str,
            on_batch: Any = None, batch_size: int | None = None, on_predict: Any = None) -> Execution:
    """Fit, then predict batch by batch; every batch is validated here, in the caller's process.

    The one fit/predict loop: the runner and the conformance kit (``recbench.testing``) both use it.
    """
    session.ready()
    start = time.perf_counter()
    session.fit(fit)
    fit_s = time.perf_counter() - start
    if on_predict is not None:
        on_predict()
    ranked, extras, diagnostics = [], [], []
    batch_size = batch_size or session.batch_size()
    start = time.perf_counter()
    for offset, batch in inputs.batches(batch_size):
        checked = contract.validate(session.predict(batch, contract), batch, fit.catalog, method)
        ranked.append(checked.items)
        extras.extend(checked.extras or [{}] * len(batch))
        diagnostics.append((len(batch), checked.diagnostics))
        if on_batch is not None:
            on_batch(offset, len(batch))
    predict_s = time.perf_counter() - start
    items = np.concatenate(ranked) if ranked else np.zeros((0, contract.k), np.int64)
    fitted = session.describe()
    return Execution(items, extras, diagnostics, fitted, fit_s, predict_s, session.mode, batch_size,
                     session.peak_memory_gb())


def targets_digest(data: TaskData) -> str:
    """A hash of the test targets and scoring arrays: a method that writes to them is caught."""
    arrays = [data.test_targets.indptr, data.test_targets.items]
    arrays += [data.outcome[k] for k in sorted(data.outcome)] + [data.subsets[k] for k in sorted(data.subsets)]
    return hash_arrays(*arrays)


def isolation_of(document: dict[str, Any]) -> str:
    """How a result's method ran; results recorded before worker isolation ran in-process."""
    return ((document.get("execution") or {}).get("isolation")) or IN_PROCESS


def _task_section(task: Task, data: TaskData) -> dict[str, Any]:
    spec = task.spec
    return {
        "name": spec.name, "version": spec.version, "kind": task.kind, "description": spec.description,
        "primary_metric": spec.primary_metric, "params": task.param_values(), "reference": spec.reference,
        "stats": data.stats, "relative_metrics": list(spec.relative_metrics),
    }


def audit_no_target_leak(fit: FitData, inputs: ExampleSet, targets: Targets) -> None:
    """Fail if a test target interaction (user, item, at or after the request time) is visible.

    Checks the training interactions and the test inputs' own histories. Earlier interactions
    with the same item (a re-watch) are allowed: only the held-out event itself must be hidden.
    """
    counts = targets.counts
    held = pd.DataFrame(
        {
            "user": np.repeat(inputs.users, counts).astype(np.int64),
            "item": targets.items.astype(np.int64),
            "as_of": np.repeat(inputs.as_of, counts),
        }
    )
    train = fit.train[["user", "item", "timestamp"]].astype({"user": np.int64, "item": np.int64})
    leaked = held.merge(train, on=["user", "item"])
    leaked = leaked[leaked["timestamp"] >= leaked["as_of"]]
    if len(leaked):
        row = leaked.iloc[0]
        raise TargetLeakError(
            f"{len(leaked)} test target interaction(s) appear in the training data given to the method "
            f"(first: user code {row['user']}, item code {row['item']}, time {row['timestamp']}). "
            "The task's build() must remove held-out interactions from FitData.train."
        )
    hist = inputs.histories
    rows = hist.row_ids()
    shown = pd.DataFrame({"row": rows, "item": hist.items.astype(np.int64), "timestamp": hist.timestamps})
    held["row"] = np.repeat(np.arange(len(inputs)), counts)
    leaked = held.merge(shown, on=["row", "item"])
    leaked = leaked[leaked["timestamp"] >= leaked["as_of"]]
    if len(leaked):
        raise TargetLeakError(
            f"{len(leaked)} test target(s) appear in the histories of their own test inputs "
            f"(first example: {inputs.keys[int(leaked['row'].iloc[0])]!r}). The task's build() leaks targets."
        )


def example_rows(
    item_ids: np.ndarray, catalog: Catalog, inputs: ExampleSet, targets: Targets, items: np.ndarray,
    per_example: dict[str, np.ndarray], extras: list[dict[str, Any]],
):
    user_ids = catalog.users["user_id"].to_numpy(dtype=object)
    for row in range(len(inputs)):
        predicted = [item_ids[i] if i >= 0 else None for i in items[row]]
        values = {}
        for name, array in per_example.items():
            value = float(array[row])
            if np.isfinite(value):
                values[name] = round(value, 6)
        yield {
            "key": str(inputs.keys[row]),
            "user": user_ids[inputs.users[row]],
            "predicted": predicted,
            "targets": [item_ids[i] for i in targets.items_of(row)],
            "metrics": values,
            **(extras[row] if row < len(extras) else {}),
        }


def reproduce_command(request: RunRequest, task: Task, dataset: str, method_cls: type, config: Any) -> str:
    """The canonical CLI command for this run: non-default settings only, file values inlined."""
    parts = ["recbench", "run", "--task", task.spec.name, "--method", method_cls.name]
    if dataset != task.spec.dataset or request.dataset:
        parts += ["--dataset", dataset]
    parts += ["--seed", str(request.seed)]
    defaults = config_to_dict(method_cls.Config())
    for key, value in config_to_dict(config).items():
        if defaults.get(key) != value:
            parts += ["--set", f"{key}={_cli_value(value)}"]
    for key, value in sorted(request.task_settings.items()):
        parts += ["--set", f"task.{key}={_cli_value(value)}"]
    return shlex.join(parts)


def _cli_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _weighted_diagnostics(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted mean of each batch's diagnostics."""
    totals: dict[str, float] = {}
    weights: dict[str, int] = {}
    for n, diag in parts:
        for key, value in diag.items():
            totals[key] = totals.get(key, 0.0) + float(value) * n
            weights[key] = weights.get(key, 0) + n
    return {key: round(totals[key] / weights[key], 6) for key in totals}


class _progress:
    """A tqdm bar on stderr, or nothing when quiet."""

    def __init__(self, total: int, desc: str, quiet: bool) -> None:
        self.total, self.desc, self.quiet = total, desc, quiet
        self.bar = None

    def __enter__(self):
        return self

    def start(self) -> None:
        """Show the bar (when predictions start, so its rate and ETA do not count the fit)."""
        if not self.quiet and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="ex", leave=False)

    def update(self, n: int) -> None:
        self.start()
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
