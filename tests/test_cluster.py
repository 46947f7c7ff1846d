"""Sweeps on executors: real jobs through submitit's LocalExecutor, the sbatch script the Slurm executor submits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recbench.cli import main
from recbench.executors import BUSY, ClusterError, Job, jobs_dir, run_job, write_marker
from recbench.runner import RunRequest

pytest.importorskip("submitit")  # the cluster extra; `make test` installs it

FAILING_PLUGIN = '''
import os

from recbench import hookimpl
from recbench.plugins.classic.most_popular import MostPopular


class FailsOnSeed(MostPopular):
    name = "fails_on_seed"
    description = "most_popular, but fit raises for the seed in $RECBENCH_TEST_FAIL_SEED (a job made to fail)"

    def fit(self, data):
        if str(self.seed) == os.environ.get("RECBENCH_TEST_FAIL_SEED"):
            raise RuntimeError(f"deliberate failure for seed {self.seed}")
        super().fit(data)


@hookimpl
def recbench_register_methods(register):
    register(FailsOnSeed)
'''


@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    """An installed third-party plugin (module plus dist-info entry point) that the jobs' processes load too."""
    site = tmp_path / "site"
    (site / "recbench_failing_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "recbench_failing_plugin.py").write_text(FAILING_PLUGIN)
    (site / "recbench_failing_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: recbench-failing-plugin\nVersion: 0.1\n")
    (site / "recbench_failing_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[recbench]\nfailing = recbench_failing_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("RECBENCH_DISABLE_PLUGIN_AUTOLOAD", "0")
    return site


def test_local_executor_runs_jobs_reports_a_failure_and_resubmits_only_it(tmp_path, failing_plugin, monkeypatch, capsys):
    out = tmp_path / "results"
    argv = ["run", "--task", "fullrank", "--method", "fails_on_seed", "--seed", "0,1,2", "--dataset", "synthetic-tiny",
            "--results-dir", str(out), "-q", "--executor", "local", "--set", "executor.parallelism=3"]
    monkeypatch.setenv("RECBENCH_TEST_FAIL_SEED", "1")
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "fails_on_seed seed 1 failed in job" in captured.err and "deliberate failure for seed 1" in captured.err
    written = sorted(out.glob("fullrank/fails_on_seed/*.json"))
    assert sorted(json.loads(p.read_text())["seed"] for p in written) == [0, 2]  # each job wrote its own file
    assert not list(out.rglob("*.tmp"))

    assert main(["status", "--results-dir", str(out)]) == 0
    status = capsys.readouterr().out
    assert "2 done, 1 failed" in status and "deliberate failure for seed 1" in status
    failed_log = next(line.split()[-1] for line in status.splitlines() if line.startswith("fails_on_seed seed 1"))
    assert "deliberate failure for seed 1" in Path(failed_log).read_text()  # the job's own log

    # the same command again: the two finished runs are answered from their files, only seed 1 is a new job
    before = {p: p.stat().st_mtime_ns for p in written}
    submitted = {p.name: json.loads(p.read_text())["job_id"] for p in jobs_dir(out).glob("runs/*.submitted.json")}
    monkeypatch.delenv("RECBENCH_TEST_FAIL_SEED")
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.count("True") == 2 and table.count("False") == 1  # the cached column
    assert {p: p.stat().st_mtime_ns for p in written} == before
    assert len(list(out.glob("fullrank/fails_on_seed/*.json"))) == 3
    resubmitted = {p.name: json.loads(p.read_text())["job_id"] for p in jobs_dir(out).glob("runs/*.submitted.json")}
    assert sum(resubmitted[name] != job for name, job in submitted.items()) == 1
    assert main(["status", "--results-dir", str(out)]) == 0
    assert "3 done" in capsys.readouterr().out


FAKE_SBATCH = """#!/bin/sh
# keeps the script it is given and answers like sbatch
n=$(ls "$FAKE_SLURM" | grep -c sbatch)
cp "$1" "$FAKE_SLURM/sbatch-$n.sh"
echo "Submitted batch job $((4242 + n))"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, srun and sacct on PATH that record what they are given: a Slurm login node without a cluster."""
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    record.mkdir()
    scripts = {"sbatch": FAKE_SBATCH, "srun": "#!/bin/sh\nexit 0\n",
               "sacct": '#!/bin/sh\necho "JobID|State|NodeList"\ncat "$FAKE_SLURM/sacct.txt" 2>/dev/null\n'}
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(record))
    return record


def test_slurm_executor_submits_one_array_with_the_asked_sbatch_parameters(tmp_path, fake_slurm, capsys):
    out = tmp_path / "results"
    argv = ["run", "--task", "fullrank", "--method", "random,most_popular", "--seed", "0,1", "--dataset", "synthetic-tiny",
            "--results-dir", str(out), "-q", "--executor", "slurm", "--detach",
            "--set", "executor.partition=gpu", "--set", "executor.gpus_per_job=2", "--set", "executor.time_min=90",
            "--set", "executor.mem_gb=32", "--set", "executor.array_parallelism=3",
            "--set", "executor.setup=module load cuda", "--set", "executor.sbatch=mail-type=END"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "submitted 4 job(s)" in printed and "recbench status" in printed and "rerun this same command" in printed
    script = (fake_slurm / "sbatch-0.sh").read_text()
    for flag in ("--partition=gpu", "--gpus-per-node=2", "--time=90", "--mem=32GB", "--array=0-3%3",
                 "--job-name=recbench", "--mail-type=END"):
        assert f"#SBATCH {flag}\n" in script, flag
    assert "module load cuda\n" in script and "submitit.core._submit" in script
    assert str(jobs_dir(out.resolve()) / "logs") in script  # logs beside the results, which the nodes share

    # the scheduler says all four are pending: the same command submits nothing again
    (fake_slurm / "sacct.txt").write_text("4242_[0-3]|PENDING|None\n")
    assert main(["status", "--results-dir", str(out)]) == 0
    assert "4 queued" in capsys.readouterr().out
    assert main(argv) == 0
    assert "submitted 0 job(s)" in capsys.readouterr().out
    assert not (fake_slurm / "sbatch-1.sh").exists()

    # one was preempted and never came back: status calls it lost, and the same command resubmits only it
    (fake_slurm / "sacct.txt").write_text("4242_0|PREEMPTED|node1\n4242_[1-3]|PENDING|None\n")
    assert main(["status", "--results-dir", str(out)]) == 0
    assert "1 lost, 3 queued" in capsys.readouterr().out
    assert main(argv) == 0
    assert "submitted 1 job(s)" in capsys.readouterr().out
    assert "--array" not in (fake_slurm / "sbatch-1.sh").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--executor", "slrum"], "unknown executor 'slrum'. Did you mean 'slurm'?"),
    (["--executor", "slurm", "--set", "executor.partitoin=gpu"],
     "executor 'slurm' options: unknown key 'partitoin'. Did you mean 'partition'?"),
    (["--set", "executor.partition=gpu"], "need --executor NAME"),
    (["--executor", "slurm"], "finds no sbatch or srun on PATH here"),
    (["--executor", "local", "--set", "executor.parallelism=1", "--seed", "0,1", "--detach"],
     "--detach would start all 2 jobs at once"),
])
def test_bad_executor_input_is_refused_before_anything_is_submitted(tmp_path, capsys, extra, message):
    out = tmp_path / "results"
    argv = ["run", "--task", "fullrank", "--method", "random", "--dataset", "synthetic-tiny", "--results-dir", str(out),
            "-q", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(jobs_dir(out).glob("runs/*"))


def test_executor_options_come_from_the_config_file_too(tmp_path, capsys):
    config = tmp_path / "cluster.toml"
    config.write_text('[executor]\npartition = "gpu"\ngpus_per_jobs = 2\n')
    argv = ["run", "--task", "fullrank", "--method", "random", "--dataset", "synthetic-tiny", "--config", str(config),
            "--results-dir", str(tmp_path / "results"), "-q", "--executor", "slurm"]
    assert main(argv) == 2
    assert "unknown key 'gpus_per_jobs'. Did you mean 'gpus_per_job'?" in capsys.readouterr().err


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    argv = ["run", "--task", "fullrank", "--method", "random", "--dataset", "synthetic-tiny",
            "--results-dir", str(tmp_path / "results"), "-q", "--executor", "local"]
    assert main(argv) == 2
    assert "pip install 'recbench[cluster]'" in capsys.readouterr().err


def test_recipe_processes_must_fit_the_jobs_gpus(tmp_path, capsys):
    argv = ["run", "--task", "rerank", "--method", "sft", "--dataset", "synthetic-tiny", "--set", "processes=2",
            "--results-dir", str(tmp_path / "results"), "-q", "--executor", "local", "--set", "executor.gpus_per_job=1"]
    assert main(argv) == 2
    assert "processes=2 under accelerate launch" in capsys.readouterr().err


def _job(root: Path, marker: Path) -> Job:
    request = RunRequest("fullrank", "random", dataset="synthetic-tiny", quiet=True)
    return Job(request, "0123456789ab", str(root), str(marker), "random seed 0")


def test_a_job_that_cannot_see_the_marker_refuses_to_run(tmp_path):
    with pytest.raises(ClusterError, match="not shared with this node") as err:
        run_job(_job(tmp_path, tmp_path / ".jobs" / "markers" / "written-on-another-host"))
    assert "--results-dir" in str(err.value)


def test_a_job_whose_run_is_locked_by_another_process_writes_nothing(tmp_path):
    lock = jobs_dir(tmp_path) / "locks" / "0123456789ab.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        handle = open({str(lock)!r}, "a+")
        fcntl.lockf(handle, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        answer = run_job(_job(tmp_path, write_marker(tmp_path, "sweep")))
    finally:
        holder.kill()
        holder.wait()
    assert answer["state"] == BUSY
    assert not list(tmp_path.glob("fullrank/**/*.json")) and not list(jobs_dir(tmp_path).glob("runs/*"))


def test_listing_executors_does_not_import_submitit():
    code = ("import sys; from recbench.cli import main; main(['list', 'executors', '-v']); "
            "assert 'submitit' not in sys.modules, 'submitit was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "gpus_per_job" in proc.stdout and "array_parallelism" in proc.stdout
