"""The built-in executors ``local`` and ``slurm``: each run of a sweep is a submitit job.

submitit is an optional dependency (``pip install 'recbench[cluster]'``), imported only when a job
is submitted or a scheduler is asked about one; ``recbench list`` never imports it. A job is
:func:`recbench.executors.run_job` pickled by submitit; a recipe that trains with ``processes=N``
runs ``accelerate launch`` inside its job, on the job's ``gpus_per_job`` GPUs.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbench import hookimpl
from recbench.config import option
from recbench.errors import ConfigError
from recbench.executors import Executor, Job, run_job

SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"}


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "the local and slurm executors submit jobs through submitit, which is not installed. "
            "Install recbench's cluster extra: pip install 'recbench[cluster]' (or pip install submitit)."
        ) from None
    return submitit


@dataclass(frozen=True)
class SubmititSubmission:
    """A submitit job, as :class:`recbench.executors.Submission`."""

    job: Any

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def log_path(self) -> Path:
        return Path(self.job.paths.stderr)

    def done(self) -> bool:
        return bool(self.job.done())

    def result(self) -> dict[str, Any]:
        return self.job.result()


class SubmititExecutor(Executor):
    """What both built-ins share: a submitit executor, ``map_array`` over the jobs, logs in ``folder``."""

    def check(self) -> None:
        import_submitit()

    def make(self, submitit: Any) -> Any:
        raise NotImplementedError

    def submit(self, jobs: Sequence[Job]) -> list[SubmititSubmission]:
        executor = self.make(import_submitit())
        return [SubmititSubmission(job) for job in executor.map_array(run_job, list(jobs))]


@dataclass(frozen=True)
class LocalConfig:
    parallelism: int = option(1, "jobs running at once on this machine, each a process of its own")
    gpus_per_job: int = option(0, "GPUs each job sees (CUDA_VISIBLE_DEVICES=0..N-1, the same for every job)")
    timeout_min: int = option(24 * 60, "wall-clock limit of one job in minutes; submitit stops it after")


class LocalExecutor(SubmititExecutor):
    name = "local"
    description = "Each run a local process through submitit's LocalExecutor (no scheduler; for one machine and tests)"
    Config = LocalConfig
    poll_s = 0.5

    def max_running(self) -> int:
        if self.config.parallelism < 1:
            raise ConfigError(f"executor.parallelism must be at least 1, got {self.config.parallelism}.")
        return self.config.parallelism

    def make(self, submitit: Any) -> Any:
        executor = submitit.LocalExecutor(folder=self.folder)
        executor.update_parameters(timeout_min=self.config.timeout_min, gpus_per_node=self.config.gpus_per_job)
        return executor

    def is_active(self, job_id: str, host: str) -> bool | None:
        if host != socket.gethostname():
            return None
        try:  # the job id is its controller's pid; a reused pid runs something other than submitit
            return b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = option(None, "Slurm partition (sbatch --partition); none: the cluster's default")
    gpus_per_job: int = option(0, "GPUs per job (sbatch --gpus-per-node); a recipe with processes=N needs N")
    cpus_per_job: int | None = option(None, "CPU cores per job (sbatch --cpus-per-task)")
    mem_gb: int | None = option(None, "memory per job in GB (sbatch --mem)")
    time_min: int = option(240, "time limit per job in minutes (sbatch --time)")
    array_parallelism: int = option(64, "most jobs of the sweep running at once (the %N of sbatch --array)")
    account: str | None = option(None, "account charged for the jobs (sbatch --account)")
    qos: str | None = option(None, "quality of service (sbatch --qos)")
    constraint: str | None = option(None, "node features required (sbatch --constraint)")
    setup: tuple[str, ...] = option((), "shell lines run in the job before recbench, comma-separated (e.g. module load cuda)")
    sbatch: tuple[str, ...] = option((), "further sbatch flags as key=value, comma-separated (e.g. mail-type=END)")


class SlurmExecutor(SubmititExecutor):
    name = "slurm"
    description = "Each run a Slurm job (one job array per sweep) through submitit's SlurmExecutor"
    Config = SlurmConfig

    def make(self, submitit: Any) -> Any:
        config = self.config
        extra = {}
        for flag in config.sbatch:
            key, sep, value = flag.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"executor.sbatch takes key=value flags, got {flag!r} (e.g. mail-type=END).")
            extra[key.strip().lstrip("-")] = value.strip()
        executor = submitit.SlurmExecutor(folder=self.folder)
        wanted = {
            "job_name": "recbench", "partition": config.partition, "gpus_per_node": config.gpus_per_job or None,
            "cpus_per_task": config.cpus_per_job, "mem": f"{config.mem_gb}GB" if config.mem_gb else None,
            "time": config.time_min, "array_parallelism": config.array_parallelism, "account": config.account,
            "qos": config.qos, "constraint": config.constraint, "setup": list(config.setup) or None,
            "additional_parameters": extra or None,
        }
        executor.update_parameters(**{key: value for key, value in wanted.items() if value is not None})
        return executor

    def check(self) -> None:
        super().check()
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if missing:
            raise ConfigError(f"executor 'slurm' submits with sbatch and srun, but finds no {' or '.join(missing)} on "
                              "PATH here. Run recbench on a Slurm login node, or use --executor local.")

    def is_active(self, job_id: str, host: str) -> bool | None:
        submitit = import_submitit()
        state = submitit.SlurmJob(folder=self.folder, job_id=job_id).watcher.get_state(job_id, mode="force")
        return None if state.upper() == "UNKNOWN" else state.split()[0].upper() in SLURM_ACTIVE


@hookimpl
def recbench_register_executors(register):
    register(LocalExecutor)
    register(SlurmExecutor)
