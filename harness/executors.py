"""Executors: where the runs of a sweep execute, and what one job does on the node that runs it.

By default ``recbench run`` runs a sweep here, one run after another. ``--executor NAME`` hands
each run to an executor registered through ``recbench_register_executors`` (the built-ins,
``local`` and ``slurm``, submit through submitit: ``recbench.plugins.cluster``). A job is one
run: :func:`run_job` checks that the node sees the results folder, takes the run's lock, runs it
exactly as ``recbench run`` would (results written atomically) and records its state beside the
sweep, so ``recbench status`` can tell done, queued, running and failed runs apart.

Everything a sweep keeps lives under ``<results dir>/.jobs`` (a task name never starts with a
dot): ``sweeps/`` (which runs a command asked for), ``runs/`` (each run's submission and state),
``locks/``, ``markers/`` and the executor's ``logs/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from recbench.errors import RecbenchError, RegistrationError
from recbench.results import atomic_write_text, now_iso

if TYPE_CHECKING:
    from recbench.runner import RunRequest

JOBS_DIR = ".jobs"
QUEUED, RUNNING, DONE, FAILED, BUSY = "queued", "running", "done", "failed", "busy"
ERROR_LINES = 12  # the last lines of a failure kept in its state record and shown by `recbench status`


class ClusterError(RecbenchError):
    """A job could not run where it was sent: the results folder is not shared, or the node's recbench differs."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a sweep, as its job receives it (pickled to the node)."""

    request: RunRequest
    run_id: str  # what the submitting host computed; the node must compute the same
    results_root: str  # absolute
    marker: str  # a file the submitting host wrote under the results folder; the node must see it
    label: str  # "METHOD seed N", for messages


class Submission(Protocol):
    """A submitted job, as an executor hands it back."""

    job_id: str
    log_path: Path | None  # where the job's output goes (None: the executor keeps no log)

    def done(self) -> bool: ...

    def result(self) -> dict[str, Any]:
        """What :func:`run_job` returned; raises when the job failed."""


class Executor:
    """A way to run jobs: a plugin subclasses this and registers it with ``recbench_register_executors``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type]  # a frozen dataclass; its fields are the executor.KEY options
    poll_s: ClassVar[float] = 10.0  # how often a waiting `recbench run` asks whether jobs are done

    def __init__(self, config: Any, folder: Path) -> None:
        self.config, self.folder = config, Path(folder)

    @classmethod
    def validate_class(cls) -> None:
        for attr in ("name", "description"):
            if not isinstance(getattr(cls, attr, None), str):
                raise RegistrationError(f"executor class {cls.__qualname__} must set a string class attribute {attr!r}.")
        config = getattr(cls, "Config", None)
        if not (dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):  # type: ignore[union-attr]
            raise RegistrationError(f"executor {cls.name!r}: Config must be a frozen dataclass, got {config!r}.")

    def check(self) -> None:
        """Raise :class:`recbench.errors.ConfigError` when jobs cannot be submitted from here; called before a sweep is planned."""

    def max_running(self) -> int | None:
        """How many jobs a waiting parent keeps submitted at once; None: submit them all now (a queue throttles)."""
        return None

    def submit(self, jobs: Sequence[Job]) -> list[Submission]:
        """Submit every job (each calls ``run_job(job)``) and return one submission per job, in order."""
        raise NotImplementedError

    def is_active(self, job_id: str, host: str) -> bool | None:
        """Whether a job submitted earlier (from ``host``) is still queued or running; None: cannot tell."""
        return None


# --- the job, on its node ------------------------------------------------------------------------


def run_job(job: Job) -> dict[str, Any]:
    """One run on the node that executes it: returns ``{"state": "done" | "busy", ...}`` or raises."""
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import Runner

    jobs = jobs_dir(job.results_root)
    check_shared(job)
    with run_lock(jobs / "locks" / f"{job.run_id}.lock") as held:
        if not held:  # another job is computing this run; it writes the results file, this one does nothing
            return {"state": BUSY, "run_id": job.run_id}
        records = RunRecords(jobs)
        records.write_state(job.run_id, RUNNING, host=socket.gethostname(), pid=os.getpid(), job_id=_job_id())
        try:
            pm = get_plugin_manager()
            outcome = Runner(load_registry(pm), pm, ResultStore(job.results_root)).run(job.request)
            if outcome.document["run_id"] != job.run_id:
                raise ClusterError(
                    f"{job.label}: this node computed run id {outcome.document['run_id']}, the submitting host "
                    f"{job.run_id}: recbench, the method's plugin or the dataset differ between them. Install the "
                    "same versions on every node (its result was kept under the node's id)."
                )
        except BaseException as exc:
            records.write_state(job.run_id, FAILED, error=last_lines(traceback.format_exc()), summary=str(exc)[:500])
            raise
        records.write_state(job.run_id, DONE, path=str(outcome.path))
        return {"state": DONE, "run_id": job.run_id, "path": str(outcome.path), "cached": outcome.cached}


def jobs_dir(results_root: str | Path) -> Path:
    return Path(results_root) / JOBS_DIR


def write_marker(results_root: Path, sweep_id: str) -> Path:
    """The file every job of this submission must see: proof that it shares the results folder."""
    marker = jobs_dir(results_root) / "markers" / f"{sweep_id}-{os.urandom(4).hex()}"
    atomic_write_text(marker, json.dumps({"host": socket.gethostname(), "written_at": now_iso()}) + "\n")
    return marker


def check_shared(job: Job) -> None:
    if not Path(job.marker).is_file():
        raise ClusterError(
            f"{job.label}: the results folder {job.results_root} is not shared with this node "
            f"({socket.gethostname()}): it does not see {job.marker}, written there at submission. Results "
            "written here would never reach the submitting host. Put --results-dir (or $RECBENCH_RESULTS) on a "
            "filesystem every node mounts at the same path, then rerun the same command."
        )


@contextmanager
def run_lock(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on ``path`` held while the run computes; the OS frees it if the job dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # POSIX locks also hold on NFS, unlike flock
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def last_lines(text: str, n: int = ERROR_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def _job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


# --- what a sweep keeps: per run, its submission (written by the parent) and its state (by the job) ----


class RunRecords:
    """``runs/<run id>.submitted.json`` and ``runs/<run id>.state.json``: two writers, two files, no race."""

    def __init__(self, jobs: Path) -> None:
        self.folder = Path(jobs) / "runs"

    def write_submitted(self, run_id: str, **fields: Any) -> None:
        self._write(run_id, "submitted", {"submitted_at": now_iso(), **fields})

    def write_state(self, run_id: str, state: str, **fields: Any) -> None:
        self._write(run_id, "state", {"state": state, "at": now_iso(), **fields})

    def submitted(self, run_id: str) -> dict[str, Any] | None:
        return self._read(run_id, "submitted")

    def state(self, run_id: str) -> dict[str, Any] | None:
        return self._read(run_id, "state")

    def clear_state(self, run_id: str) -> None:
        (self.folder / f"{run_id}.state.json").unlink(missing_ok=True)

    def _write(self, run_id: str, kind: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.folder / f"{run_id}.{kind}.json", json.dumps(record, indent=1, default=str) + "\n")

    def _read(self, run_id: str, kind: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / f"{run_id}.{kind}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
