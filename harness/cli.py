"""The ``recbench`` command. Only this module reads ``sys.argv``.

Heavy libraries are imported inside commands: ``recbench --help``, ``list`` and ``plugins``
never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from recbench import __version__
from recbench.errors import ConfigError, RecbenchError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a sweep on an executor records as its command
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, in the handler below, not at interpreter exit
        return code
    except RecbenchError as exc:
        print(f"recbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recbench: interrupted; finished runs are saved, rerun the same command to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`recbench data info X | head -3`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a command cut off this way


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recbench", description="Benchmark LLM post-training recipes against classic recommenders."
    )
    parser.add_argument("--version", action="version", version=f"recbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run methods on a task and record results", description=_RUN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--task", required=True, help="task name (see `recbench list tasks`)")
    run.add_argument("--method", required=True, help="method name, or several separated by commas (a sweep)")
    run.add_argument("--dataset", help="dataset to use instead of the task's default")
    run.add_argument("--seed", default="0", help="method seed, or several separated by commas (default 0)")
    run.add_argument("--config", help="TOML/JSON file of method settings (top level, or [method.NAME]) and [task] params")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a method setting, or a task parameter as task.KEY=VALUE (repeatable)")
    run.add_argument("--force", action="store_true", help="recompute even if a result for this exact run exists")
    run.add_argument("--results-dir", help="where results files go (default ./results or $RECBENCH_RESULTS)")
    run.add_argument("-q", "--quiet", action="store_true", help="no plan and no progress bars (a CPU warning still shows)")
    run.add_argument("--plan", action="store_true",
                     help="print each run's plan (example counts, settings, stages, estimated time) and exit without "
                          "running; writes no results")
    run.add_argument("--in-process", action="store_true",
                     help="run the method in recbench's own process, not an isolated worker (debugging only; "
                          "results record it and leaderboards flag it)")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="stop a method whose fit plus predict take longer than this (the sweep goes on)")
    run.add_argument("--max-memory-gb", type=float, metavar="GB",
                     help="address-space limit of the method's worker; going over ends that run with an error")
    run.add_argument("--executor", metavar="NAME",
                     help="run each run of the sweep as a job of this executor (local, slurm; `recbench list executors`); "
                          "options as --set executor.KEY=VALUE or an [executor] table. Default: here, one after another")
    run.add_argument("--detach", action="store_true",
                     help="with --executor: submit the jobs and return at once (`recbench status` follows them)")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="which runs of a sweep on an executor are done, queued, running or failed")
    status.add_argument("sweep", nargs="?", help="the sweep id `recbench run --executor` printed (or its start); "
                                                 "default: the latest sweep")
    status.add_argument("--results-dir", help="the results folder of the run (default ./results or $RECBENCH_RESULTS)")
    status.set_defaults(func=cmd_status)

    ceiling = sub.add_parser("ceiling", help="record a simulated task's Bayes-optimal ceiling (the oracle row)")
    ceiling.add_argument("--task", required=True)
    ceiling.add_argument("--dataset", help="dataset to use instead of the task's default")
    ceiling.add_argument("--set", action="append", default=[], metavar="task.KEY=VALUE", help="task parameter")
    ceiling.add_argument("--force", action="store_true", help="recompute even if recorded")
    ceiling.add_argument("--results-dir", help="where results files go (default ./results or $RECBENCH_RESULTS)")
    ceiling.set_defaults(func=cmd_ceiling)

    ties = sub.add_parser("ties", help="a metric's spread across orders of equal timestamps (tie seeds)",
                          description="Run METHOD under tie seeds 0..N-1 (0 is the protocol's rule) and report the "
                                      "metric under the protocol's rule against its mean, sd and range; writes no results.")
    ties.add_argument("--task", required=True)
    ties.add_argument("--method", required=True)
    ties.add_argument("--dataset", help="dataset to use instead of the task's default")
    ties.add_argument("--seeds", type=int, default=100, help="how many tie seeds (default 100)")
    ties.add_argument("--metric", help="metric to report (default: the task's primary metric)")
    ties.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting or task.KEY=VALUE")
    ties.set_defaults(func=cmd_ties)

    lst = sub.add_parser("list", help="list tasks, methods, datasets or metrics")
    lst.add_argument("what", choices=["tasks", "methods", "datasets", "metrics", "executors"])
    lst.add_argument("-v", "--verbose", action="store_true", help="also show each method's or executor's options")
    lst.set_defaults(func=cmd_list)

    plugins = sub.add_parser("plugins", help="list loaded plugins, their versions and where they came from")
    plugins.set_defaults(func=cmd_plugins)

    data = sub.add_parser("data", help="fetch, inspect or add datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = data_sub.add_parser("fetch", help="download (or locate offline) and cache a dataset")
    fetch.add_argument("name")
    fetch.add_argument("--refresh", action="store_true", help="ignore the local cache")
    fetch.set_defaults(func=cmd_data_fetch)
    info = data_sub.add_parser("info", help="counts, date range, sparsity and source of a dataset")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_data_info)
    add = data_sub.add_parser("add", help="register your own interactions (CSV or Parquet) as a dataset")
    add.add_argument("name")
    add.add_argument("--interactions", required=True, help="CSV or Parquet file of interactions")
    add.add_argument("--items", help="optional CSV/Parquet of items (item_id, title, year, genres, text)")
    add.add_argument("--users", help="optional CSV/Parquet of users (user_id and demographics)")
    add.add_argument("--map", default="", help="column mapping, e.g. user_id=uid,item_id=movie,timestamp=ts,rating=stars")
    add.add_argument("--timestamp-format", help="strftime format of date strings (default: Unix seconds or ISO dates)")
    add.set_defaults(func=cmd_data_add)
    add_logs = data_sub.add_parser(
        "add-artwork-logs", help="register your own artwork logs (JSONL or Parquet) as an artwork dataset",
        description="Validate artwork logs (schema: docs/artwork-logs.md) and register them for "
                    "`recbench run --task artwork --dataset NAME`.")
    add_logs.add_argument("name")
    add_logs.add_argument("--logs", required=True, help="JSONL or Parquet file, one record per logged choice")
    add_logs.set_defaults(func=cmd_data_add_artwork_logs)

    board = sub.add_parser("leaderboard", help="render leaderboards/TASK.md from results files")
    board.add_argument("--task", required=True)
    board.add_argument("--reference", help="method whose row is the base of the relative column")
    board.add_argument("--results-dir", help="results folder (default ./results or $RECBENCH_RESULTS)")
    board.add_argument("--out", default="leaderboards", help="output folder (default ./leaderboards)")
    board.add_argument("--metrics", help="comma-separated metrics to show (the primary metric is always first)")
    board.add_argument("--no-print", action="store_true", help="write the file without printing it")
    board.set_defaults(func=cmd_leaderboard)
    return parser


_RUN_HELP = """\
Run METHOD on TASK and write a results file. A run that already has a result is answered from
it (use --force to recompute); several methods or seeds make a sweep that resumes where an
interrupted one stopped.

examples:
  recbench run --task fullrank --method most_popular
  recbench run --task artwork --method sft_reason --plan        # what it would do and how long: no run
  recbench run --task rerank --method random,most_popular --seed 0,1,2
  recbench run --task topk --method most_popular --set task.horizon=5
  recbench run --task rerank --method sft,grpo --seed 0,1,2 --executor slurm --set executor.gpus_per_job=1
"""


# --- run -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from recbench.config import parse_assignments, read_config_file
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner
    from recbench.worker import IN_PROCESS, WORKER, is_method_failure

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    seeds = parse_seeds(args.seed)
    file_values = read_config_file(args.config) if args.config else {}
    overrides = parse_assignments(args.set)
    task_settings = {**file_values.pop("task", {}), **{k[5:]: v for k, v in overrides.items() if k.startswith("task.")}}
    executor_settings = {**file_values.pop("executor", {}),
                         **{k[9:]: v for k, v in overrides.items() if k.startswith("executor.")}}
    cli_settings = {k: v for k, v in overrides.items() if not k.startswith(("task.", "executor."))}
    if (executor_settings or args.detach) and not args.executor:
        raise ConfigError("executor options and --detach need --executor NAME (e.g. --executor slurm); "
                          "without it the sweep runs here, one run after another.")
    per_method = file_values.pop("method", {})
    if file_values and len(methods) > 1:
        raise ConfigError(
            f"{args.config}: top-level settings are ambiguous with several methods; put them under [method.NAME]."
        )

    pm = get_plugin_manager()
    registry = load_registry(pm)
    for name in methods:  # fail on a typo before any long run starts
        registry.methods.get(name)
    registry.tasks.get(args.task)
    if len(methods) > 1:
        _check_sweep_settings(registry, methods, cli_settings)
    runner = Runner(registry, pm, ResultStore(args.results_dir))
    requests = [
        RunRequest(
            task=args.task, method=name, dataset=args.dataset, seed=seed,
            method_settings={**file_values, **per_method.get(name, {})},
            cli_settings=cli_settings if len(methods) == 1 or not cli_settings else _only_known(registry, name, cli_settings),
            task_settings=task_settings, force=args.force, quiet=args.quiet,
            isolation=IN_PROCESS if args.in_process else WORKER, timeout_s=args.timeout,
            max_memory_gb=args.max_memory_gb,
        )
        for name in methods for seed in seeds
    ]
    if args.plan:
        for request in requests:
            print(runner.preview(request).render())
        return 0
    if args.executor:
        return _run_on_executor(args, registry, runner, requests, executor_settings)
    rows, failed = [], []
    for request in requests:
        name, seed = request.method, request.seed
        try:
            outcome = runner.run(request)
        except Exception as exc:
            if not is_method_failure(exc) or len(requests) == 1:
                raise
            failed.append(f"{name} seed {seed}")  # a method's failure ends its run, not the sweep
            print(f"recbench: error: {name} (seed {seed}) failed: {exc}", file=sys.stderr)
            continue
        rows.append(_summary_row(outcome))
        _print_done(outcome, args.quiet)
    _print_summary(rows)
    if failed:
        print(f"recbench: {len(failed)} run(s) failed and wrote no result: {', '.join(failed)}.", file=sys.stderr)
        return 1
    return 0


def _run_on_executor(args: argparse.Namespace, registry, runner, requests: list, settings: dict[str, Any]) -> int:
    """The sweep's runs as jobs of ``--executor``: submitted, then waited for or (``--detach``) left running."""
    import shlex
    import textwrap

    from recbench.config import build_config
    from recbench.executors import jobs_dir
    from recbench.sweep import run_sweep

    cls = registry.executors.get(args.executor)
    config = build_config(cls.Config, settings, owner=f"executor {args.executor!r} options")
    executor = cls(config, jobs_dir(runner.store.root.resolve()) / "logs")
    command = shlex.join(["recbench", *args.argv])
    sweep = run_sweep(runner, executor, requests, command=command, detach=args.detach, quiet=args.quiet)
    for line in sweep.elsewhere:
        print(f"[running] {line}: not submitted again", file=sys.stderr)
    status = shlex.join(["recbench", "status", sweep.sweep_id] + (["--results-dir", args.results_dir] if args.results_dir else []))
    if args.detach:
        print(f"submitted {sweep.submitted} job(s) of sweep {sweep.sweep_id} to {executor.name}; "
              f"{len(sweep.outcomes)} run(s) already had results.\n"
              f"  follow them:  {status}\n"
              "  collect them: rerun this same command; it answers finished runs from their results, leaves running "
              "ones alone and resubmits failed ones.")
        return 0
    for outcome in sweep.outcomes:
        _print_done(outcome, args.quiet)
    for failure in sweep.failed:
        print(f"recbench: error: {failure.label} failed in job {failure.job_id} (log: {failure.log_path}):\n"
              f"{textwrap.indent(failure.error, '    ')}", file=sys.stderr)
    _print_summary([_summary_row(outcome) for outcome in sweep.outcomes])
    if sweep.failed:
        print(f"recbench: {len(sweep.failed)} run(s) failed and wrote no result: "
              f"{', '.join(f.label for f in sweep.failed)}. Rerun the same command to resubmit them; `{status}` "
              "lists them with their logs.", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import textwrap

    from tabulate import tabulate

    from recbench.manager import load_registry
    from recbench.results import ResultStore
    from recbench.sweep import sweep_status

    sweep, runs = sweep_status(ResultStore(args.results_dir).root, args.sweep, load_registry().executors)
    print(f"sweep {sweep['sweep']} on {sweep['executor']}: {sweep['command']}")
    print(tabulate([[r.label, r.state, r.job_id, r.log] for r in runs], headers=["run", "state", "job", "log"],
                   tablefmt="simple"))
    for run in runs:
        if run.error:
            print(f"\n{run.label} ({run.state}, job {run.job_id}), last lines:\n{textwrap.indent(run.error, '    ')}")
    counts = {state: sum(r.state == state for r in runs) for state in dict.fromkeys(r.state for r in runs)}
    print("\n" + ", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def _print_done(outcome, quiet: bool) -> None:
    if not quiet:
        state = "cached" if outcome.cached else "done"
        print(f"[{state}] {outcome.document['command']}  ->  {outcome.path}", file=sys.stderr)


MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which every method may use, takes 0 .. 2**32 - 1


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seed takes integers separated by commas, got {text!r}.") from None
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad or not seeds:
        raise ConfigError(f"--seed {text!r}: seeds are integers from 0 to {MAX_SEED:,}, e.g. --seed 0,1,2.")
    return seeds


def _check_sweep_settings(registry, methods: list[str], settings: dict[str, Any]) -> None:
    import dataclasses

    known = {f.name for m in methods for f in dataclasses.fields(registry.methods.get(m).Config)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"--set key(s) {unknown} belong to none of the methods {methods}; valid keys: {sorted(known)}.")


def cmd_ceiling(args: argparse.Namespace) -> int:
    from recbench.config import parse_assignments
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner

    settings = parse_assignments(args.set)
    bad = [k for k in settings if not k.startswith("task.")]
    if bad:
        raise ConfigError(f"ceiling takes only task parameters (task.KEY=VALUE); got {bad}.")
    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore(args.results_dir))
    request = RunRequest(task=args.task, method="oracle", dataset=args.dataset, force=args.force, quiet=True,
                         task_settings={k[5:]: v for k, v in settings.items()})
    outcome = runner.record_ceiling(request)
    _print_summary([_summary_row(outcome)])
    return 0


def cmd_ties(args: argparse.Namespace) -> int:
    from recbench.config import parse_assignments
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner
    from recbench.ties import tie_spread

    if args.seeds < 2:
        raise ConfigError(f"--seeds must be at least 2 to measure a spread, got {args.seeds}.")
    settings = parse_assignments(args.set)
    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore())
    request = RunRequest(task=args.task, method=args.method, dataset=args.dataset, quiet=True,
                         cli_settings={k: v for k, v in settings.items() if not k.startswith("task.")},
                         task_settings={k[5:]: v for k, v in settings.items() if k.startswith("task.")})
    _print_summary([tie_spread(runner, request, args.seeds, args.metric).summary()])
    return 0


def _only_known(registry, method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """In a sweep, --set keys apply to the methods that have them; a key no method has is an error."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(registry.methods.get(method).Config)}
    return {k: v for k, v in settings.items() if k in fields}


def _summary_row(outcome) -> dict[str, Any]:
    doc = outcome.document
    primary = doc["primary_metric"]
    metric = doc["metrics"][primary]
    return {
        "method": doc["method"]["name"], "seed": doc["seed"],
        primary: f"{metric['value']:.4f} [{metric['ci_low']:.4f}, {metric['ci_high']:.4f}]",
        "examples": doc["n_examples"], "fit s": doc["timing"]["fit_s"], "predict s": doc["timing"]["predict_s"],
        "cached": outcome.cached,
    }


def _print_summary(rows: list[dict[str, Any]]) -> None:
    from tabulate import tabulate

    print(tabulate(rows, headers="keys", tablefmt="github"))


# --- list / plugins ------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from recbench.manager import load_registry

    registry = load_registry()
    if args.what == "tasks":
        rows = [
            [name, spec.version, spec.dataset, registry.task_kinds.get(spec.kind).contract_kind, spec.primary_metric,
             spec.description]
            for name, spec in sorted(registry.tasks.entries.items())
        ]
        headers = ["task", "version", "dataset", "contract", "primary metric", "description"]
    elif args.what == "methods":
        rows = []
        for name, cls in sorted(registry.methods.entries.items()):
            rows.append([name, ", ".join(registry.tasks_supported_by(cls)), cls.description])
            rows += _option_rows(cls.Config, args.verbose)
        headers = ["method", "tasks", "description"]
    elif args.what == "executors":
        rows = []
        for name, cls in sorted(registry.executors.entries.items()):
            rows.append([name, "", cls.description])
            rows += _option_rows(cls.Config, args.verbose)
        headers = ["executor", "options (-v)", "description"]
    elif args.what == "datasets":
        rows = [[name, spec.description] for name, spec in sorted(registry.datasets.entries.items())]
        headers = ["dataset", "description"]
    else:
        rows = [[name, "@k" if m.needs_k else "", m.description] for name, m in sorted(registry.metrics.entries.items())]
        headers = ["metric", "cutoff", "description"]
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    return 0


def _option_rows(config_cls: type, verbose: bool) -> list[list[str]]:
    from recbench.config import describe_fields

    return [["", f"  {name}: {type_name} = {default!r}", doc]
            for name, type_name, default, doc in describe_fields(config_cls)] if verbose else []


def cmd_plugins(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from recbench.manager import get_plugin_manager, load_registry, plugin_source

    pm = get_plugin_manager()
    registry = load_registry(pm)
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        provides = []
        for section in (registry.datasets, registry.task_kinds, registry.tasks, registry.methods, registry.metrics,
                        registry.executors):
            names = [n for n, src in section.sources.items() if src == name]
            if names:
                provides.append(f"{section.kind}s: {', '.join(sorted(names))}")
        rows.append([name, plugin_source(pm, plugin), "; ".join(provides)])
    print(tabulate(rows, headers=["plugin", "from", "provides"], tablefmt="simple"))
    return 0


# --- data ----------------------------------------------------------------------------------


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from recbench.data.store import get_catalog
    from recbench.manager import load_registry

    catalog = get_catalog(load_registry().datasets.get(args.name), refresh=args.refresh, quiet=False)
    _print_info(catalog.summary())
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from recbench.data.store import get_catalog
    from recbench.manager import load_registry

    spec = load_registry().datasets.get(args.name)
    catalog = get_catalog(spec, quiet=True)
    summary = catalog.summary()
    info_hook = getattr(spec, "info", None)
    if callable(info_hook):
        summary.update(info_hook(catalog))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_info(summary)
    return 0


def _print_info(summary: dict[str, Any]) -> None:
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key:>16}: {value}")


def cmd_data_add(args: argparse.Namespace) -> int:
    from recbench.config import parse_assignments
    from recbench.plugins.datasets.user_data import add_user_dataset

    mapping = parse_assignments([p for p in args.map.split(",") if p.strip()]) if args.map else {}
    path = add_user_dataset(
        args.name, Path(args.interactions), items=Path(args.items) if args.items else None,
        users=Path(args.users) if args.users else None, mapping=mapping, timestamp_format=args.timestamp_format,
        report=lambda note: print(f"recbench: warning: {note}", file=sys.stderr),
    )
    print(f"registered dataset {args.name!r} ({path}); use it with --dataset {args.name}")
    return 0


def cmd_data_add_artwork_logs(args: argparse.Namespace) -> int:
    from recbench.plugins.datasets.artwork_logs import add_artwork_logs

    path = add_artwork_logs(args.name, Path(args.logs))
    print(f"registered artwork dataset {args.name!r} ({path}); use it with --task artwork --dataset {args.name}")
    return 0


# --- leaderboard ---------------------------------------------------------------------------


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from recbench.leaderboard import render_leaderboard
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.param_sweeps import default_protocol
    from recbench.results import ResultStore, atomic_write_text

    registry = load_registry(get_plugin_manager())
    if args.reference:
        _check_reference(args.reference, args.task, registry, ResultStore(args.results_dir))
    spec_views = {}  # the task spec's views of the results; a task with results but no spec has none
    if args.task in registry.tasks:
        spec = registry.tasks.get(args.task)
        spec_views = dict(ablations=spec.ablations, spec_metrics=spec.metrics, param_sweeps=spec.param_sweeps,
                          defaults=default_protocol(spec, registry.task_kinds.get(spec.kind)))
    board = render_leaderboard(args.task, ResultStore(args.results_dir), reference=args.reference,
                               metrics=args.metrics.split(",") if args.metrics else None, out_dir=Path(args.out),
                               **spec_views)
    path = Path(args.out) / f"{args.task}.md"
    atomic_write_text(path, board.markdown)
    for note in board.notes:
        print(f"recbench: note: {note}", file=sys.stderr)
    if not args.no_print:
        print(board.markdown)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _check_reference(reference: str, task: str, registry, store) -> None:
    """``--reference`` names a method (registered, or one with results) or a row label, ``method (options)``."""
    from recbench.registry import unknown_name_message

    known = set(registry.methods.names()) | {doc["method"]["name"] for _, doc in store.iter_results(task)
                                             if isinstance(doc.get("method"), dict) and "name" in doc["method"]}
    if reference.split(" (", 1)[0] not in known:
        raise ConfigError(f"--reference: {unknown_name_message('method', reference, known)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
