"""A sweep on an executor: plan every run here, skip what is finished or still running, submit the rest.

Rerunning the same command is how a sweep resumes: finished runs are answered from their results,
runs whose job is still queued or running are left alone, failed and lost ones are submitted again.
A job takes its run's lock before computing (:func:`recbench.executors.run_job`), so two jobs never
write the same results file even when the scheduler cannot say whether an old job is alive.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from recbench.errors import ConfigError, RecbenchError
from recbench.executors import (
    BUSY, DONE, FAILED, QUEUED, RUNNING, Executor, Job, RunRecords, Submission, jobs_dir, last_lines, write_marker,
)
from recbench.hashing import stable_hash
from recbench.results import atomic_write_text, now_iso, resolved_config
from recbench.runner import RunOutcome, RunPlan, RunRequest, Runner

LOST, NOT_SUBMITTED = "lost", "not submitted"


@dataclass(frozen=True)
class Failure:
    label: str
    job_id: str
    log_path: Path | None
    error: str  # the last lines of the job's error


@dataclass
class SweepOutcome:
    sweep_id: str
    outcomes: list[RunOutcome] = field(default_factory=list)  # answered from results, or computed by a job
    failed: list[Failure] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # "LABEL (job N)": left to a job submitted earlier
    submitted: int = 0


def run_sweep(runner: Runner, executor: Executor, requests: Sequence[RunRequest], *, command: str,
              detach: bool = False, quiet: bool = False) -> SweepOutcome:
    """Submit the runs of ``requests`` that have no result; then wait for them (one progress bar) unless ``detach``."""
    executor.check()
    root = runner.store.root.resolve()
    records = RunRecords(jobs_dir(root))
    plans = _unique_plans(runner, requests)
    sweep_id = stable_hash(sorted(plan.run_id for plan, _ in plans), 10)
    outcome = SweepOutcome(sweep_id)
    jobs: list[Job] = []
    for plan, request in plans:
        check_gpus(plan, executor)
        label = _label(plan, request)
        stored = None if request.force else runner.stored(plan, request)
        if stored is not None:
            outcome.outcomes.append(stored)
        elif (job_id := _active_job(records, executor, plan.run_id)) is not None:
            outcome.elsewhere.append(f"{label} (job {job_id})")
        else:
            jobs.append(Job(replace(request, quiet=True), plan.run_id, str(root), "", label))
    limit = executor.max_running() or max(1, len(jobs))
    if detach and len(jobs) > limit:
        raise ConfigError(
            f"--detach would start all {len(jobs)} jobs at once, but executor {executor.name!r} runs {limit} at a "
            f"time while recbench waits. Raise executor.parallelism to {len(jobs)}, or leave out --detach."
        )
    _write_sweep(root, sweep_id, command, executor, plans, runner)
    if jobs:
        marker = str(write_marker(root, sweep_id))
        jobs = [replace(job, marker=marker) for job in jobs]
    outcome.submitted = len(jobs)
    if detach:
        _submit(executor, records, jobs)
        return outcome
    _wait(executor, records, jobs, limit, outcome, quiet)
    order = {plan.run_id: position for position, (plan, _) in enumerate(plans)}
    outcome.outcomes.sort(key=lambda run: order.get(run.document["run_id"], len(order)))  # the command's order
    return outcome


def check_gpus(plan: RunPlan, executor: Executor) -> None:
    """A recipe training under ``accelerate launch`` with N processes needs N GPUs in its job."""
    processes = getattr(resolved_config(plan.config), "processes", None)
    gpus = getattr(executor.config, "gpus_per_job", 0)
    if isinstance(processes, int) and gpus and processes > gpus:
        raise ConfigError(
            f"method {plan.method_cls.name!r} trains with processes={processes} under accelerate launch (one process "
            f"per GPU), but each job gets executor.gpus_per_job={gpus}. Set --set executor.gpus_per_job={processes}."
        )


def _unique_plans(runner: Runner, requests: Sequence[RunRequest]) -> list[tuple[RunPlan, RunRequest]]:
    """One plan per run id: a run asked for twice (``--seed 0,0``) is one job."""
    plans: dict[str, tuple[RunPlan, RunRequest]] = {}
    for request in requests:
        plan = runner.plan(request)
        plans.setdefault(plan.run_id, (plan, request))
    return list(plans.values())


def _label(plan: RunPlan, request: RunRequest) -> str:
    return f"{plan.method_cls.name} seed {request.seed}"


def _active_job(records: RunRecords, executor: Executor, run_id: str) -> str | None:
    """The id of an earlier job of this run that the scheduler says is still queued or running."""
    submitted, state = records.submitted(run_id), records.state(run_id)
    if submitted is None or (state is not None and state["state"] not in (QUEUED, RUNNING)):
        return None
    alive = executor.is_active(str(submitted["job_id"]), submitted.get("host", ""))
    return str(submitted["job_id"]) if alive else None  # unknown: resubmit; the run's lock keeps it single


def _submit(executor: Executor, records: RunRecords, jobs: Sequence[Job]) -> list[Submission]:
    if not jobs:
        return []
    for job in jobs:
        records.clear_state(job.run_id)  # a failure from an earlier attempt no longer describes this run
    submissions = executor.submit(jobs)
    for job, submission in zip(jobs, submissions):
        records.write_submitted(job.run_id, job_id=submission.job_id, host=socket.gethostname(),
                                executor=executor.name, log=str(submission.log_path or ""))
    return submissions


def _wait(executor: Executor, records: RunRecords, jobs: list[Job], limit: int, outcome: SweepOutcome,
          quiet: bool) -> None:
    from tqdm.auto import tqdm

    if not jobs:
        return
    pending, running = list(jobs), []
    with tqdm(total=len(jobs), desc=f"sweep {outcome.sweep_id} on {executor.name}", unit="job", disable=quiet) as bar:
        while pending or running:
            if pending and len(running) < limit:
                batch, pending = pending[: limit - len(running)], pending[limit - len(running):]
                running += zip(batch, _submit(executor, records, batch))
            time.sleep(executor.poll_s)
            for job, submission in [pair for pair in running if pair[1].done()]:
                running.remove((job, submission))
                _collect(job, submission, outcome, records)
                bar.update(1)


def _collect(job: Job, submission: Submission, outcome: SweepOutcome, records: RunRecords) -> None:
    try:
        answer = submission.result()
    except Exception as exc:  # the job's error, re-raised by the executor; the job's own record of it reads best
        state = records.state(job.run_id) or {}
        error = state["error"] if state.get("state") == FAILED else last_lines(str(exc))
        outcome.failed.append(Failure(job.label, submission.job_id, submission.log_path, error))
        return
    if answer["state"] == BUSY:
        outcome.elsewhere.append(f"{job.label} (another job holds its lock)")
        return
    path = Path(answer["path"])
    document = json.loads(path.read_text())
    outcome.outcomes.append(RunOutcome(document, path, cached=bool(answer.get("cached"))))


def _write_sweep(root: Path, sweep_id: str, command: str, executor: Executor,
                 plans: list[tuple[RunPlan, RunRequest]], runner: Runner) -> None:
    runs = [{"run_id": plan.run_id, "label": _label(plan, request),
             "path": str(runner.store.path(plan.task.spec.name, plan.method_cls.name, plan.run_id).relative_to(root))}
            for plan, request in plans]
    record = {"sweep": sweep_id, "command": command, "executor": executor.name, "folder": str(executor.folder),
              "written_at": now_iso(), "runs": runs}
    atomic_write_text(jobs_dir(root) / "sweeps" / f"{sweep_id}.json", json.dumps(record, indent=1) + "\n")


# --- recbench status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    label: str
    state: str  # done, queued, running, failed, lost, not submitted
    job_id: str
    log: str
    error: str  # the last lines of a failed or lost run's error


def sweep_status(results_root: Path, sweep_id: str | None, executors: Any) -> tuple[dict[str, Any], list[RunStatus]]:
    """The state of every run of a sweep (the latest one when ``sweep_id`` is None)."""
    jobs = jobs_dir(Path(results_root).resolve())
    sweep = _find_sweep(jobs, sweep_id)
    cls = executors.get(sweep["executor"])
    executor = cls(cls.Config(), Path(sweep["folder"]))
    records = RunRecords(jobs)
    return sweep, [_run_status(jobs.parent, records, executor, run) for run in sweep["runs"]]


def _run_status(root: Path, records: RunRecords, executor: Executor, run: dict[str, Any]) -> RunStatus:
    submitted = records.submitted(run["run_id"]) or {}
    state = records.state(run["run_id"]) or {}
    job_id, log = str(submitted.get("job_id", "")), submitted.get("log", "")
    if (root / run["path"]).is_file():
        return RunStatus(run["label"], DONE, job_id, log, "")
    if state.get("state") == FAILED:
        return RunStatus(run["label"], FAILED, job_id, log, state.get("error", ""))
    if not submitted:
        return RunStatus(run["label"], NOT_SUBMITTED, "", "", "")
    if executor.is_active(job_id, submitted.get("host", "")) is False:
        return RunStatus(run["label"], LOST, job_id, log, _log_tail(log) or "the job ended without writing a result")
    return RunStatus(run["label"], RUNNING if state.get("state") == RUNNING else QUEUED, job_id, log, "")


def _find_sweep(jobs: Path, sweep_id: str | None) -> dict[str, Any]:
    sweeps = sorted((jobs / "sweeps").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if sweep_id is not None:
        sweeps = [p for p in sweeps if p.stem.startswith(sweep_id)]
    if not sweeps:
        where = f"sweep {sweep_id!r}" if sweep_id else "any sweep"
        raise RecbenchError(
            f"no record of {where} under {jobs / 'sweeps'}: sweeps are recorded by `recbench run --executor ...`. "
            "Pass the same --results-dir as the run."
        )
    return json.loads(sweeps[-1].read_text())


def _log_tail(log: str) -> str:
    try:
        return last_lines(Path(log).read_text(errors="replace")) if log else ""
    except OSError:
        return ""
