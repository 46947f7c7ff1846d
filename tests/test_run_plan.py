"""The run's plan (stages, counts, estimate, CPU warning), stage progress from the worker, and the teacher's resumable log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recbench import hookimpl, progress
from recbench.cli import main
from recbench.llm.backend import Generation
from recbench.llm.teacher import TeacherLog, distill
from recbench.manager import get_plugin_manager, load_registry
from recbench.method import FitSummary
from recbench.planning import CostBook, Preview, estimate
from recbench.plugins.classic.most_popular import MostPopular
from recbench.plugins.llm.sft import SFTReason
from recbench.results import ResultStore
from recbench.runner import RunRequest, Runner

PLAN = ["run", "--task", "fullrank", "--method", "most_popular", "--dataset", "synthetic-tiny", "--plan"]


def test_plan_prints_counts_stages_and_estimate_and_writes_no_result(tmp_path, capsys):
    assert main([*PLAN, "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "plan: most_popular on fullrank (dataset synthetic-tiny, seed 0" in out
    assert "60 valid, 60 test" in out and "1. fit" in out and "2. predict" in out
    assert "unknown: not measured here yet" in out
    assert not (tmp_path / "results").exists()
    # after one real run the plan is measured here, not unknown
    assert main([*PLAN[:-1], "-q", "--results-dir", str(tmp_path / "results")]) == 0
    capsys.readouterr()
    assert main([*PLAN, "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "measured here" in out and "a result of this exact run exists" in out


def test_sft_reason_plans_teacher_training_per_lr_validation_and_test_and_warns_on_a_cpu():
    method = SFTReason(SFTReason.Config(device="cpu"))  # smoke preset: 24 training pairs, 8 valid, lr 2e-4 and 1e-3
    summary = FitSummary(train_interactions=100_000, train_examples=4000, valid_examples=500, test_examples=2000, n_items=1682)
    stages = method.stages(summary)
    assert [(s.name, s.units) for s in stages] == [
        ("teacher generation", 24), ("training lr=0.0002", 6), ("validation lr=0.0002", 8),
        ("training lr=0.001", 6), ("validation lr=0.001", 8), ("test generation", 2000)]
    settings = method.plan_settings()
    assert settings["teacher"] == "smollm2-135m" and settings["device"] == "cpu" and settings["lr_grid"] == (2e-4, 1e-3)
    estimates = estimate(stages, "artwork:x", CostBook())
    assert all(e.seconds and e.basis.startswith("documented: SmolLM2-135M on 2 CPU cores") for e in estimates)
    preview = Preview("artwork", "sft_reason", "x", 0, summary, settings, stages, estimates)
    test_s = estimates[-1].seconds
    n = int(600 / (test_s / 2000))
    assert preview.total_s > 3600 and f"--set task.max_test_examples={n}" in preview.warning()
    gpu = Preview("artwork", "sft_reason", "x", 0, summary, {**settings, "device": "cuda"}, stages, estimates)
    assert gpu.warning() is None


class Staged(MostPopular):
    """Reports two fit stages through recbench.progress, as an LLM recipe does."""

    name = "staged"

    def stages(self, data):
        from recbench.method import Stage

        return [Stage("counting", 3, cost_key="staged:counting"), *super().stages(data)[1:]]

    def fit(self, data):
        with progress.stage("counting", 3):
            for _ in range(3):
                progress.advance()
        super().fit(data)


def test_stage_progress_travels_from_the_worker_to_the_hook_and_is_measured(tmp_path):
    seen = []

    class Plugin:
        @hookimpl
        def recbench_register_methods(self, register):
            register(Staged)

        @hookimpl
        def recbench_stage_progress(self, run, stage, done, total, unit, state):
            seen.append((stage, done, total, state))

    pm = get_plugin_manager(extra_plugins=(Plugin(),))
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    runner.run(RunRequest("fullrank", "staged", dataset="synthetic-tiny", quiet=True))
    assert seen[0] == ("counting", 0, 3, "start") and seen[-1] == ("counting", 3, 3, "end")
    costs = CostBook().read()
    assert "fullrank:synthetic-tiny:staged:counting" in costs and "fullrank:synthetic-tiny:staged:predict" in costs


class StoppingTeacher:
    """Justifies and agrees with option 0; raises on its prediction number ``fail_at`` (an interrupt)."""

    fingerprint = "stopping-teacher"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.predictions, self.justified = fail_at, 0, 0

    def generate(self, prompts, params):
        if params.forced_prefix == "Reason:":
            self.justified += len(prompts)
            return [[Generation(" A reason.", 3)] for _ in prompts]
        if self.predictions == self.fail_at:
            raise InterruptedError("stopped")
        self.predictions += 1
        return [[Generation(" option zero </option>", 4)]]


def test_an_interrupted_teacher_phase_resumes_from_the_answers_it_made(tmp_path):
    from recbench.llm.prompts import BuiltPrompt

    prompts = [BuiltPrompt(messages=[{"role": "user", "content": f"history {i}"}], forced_prefix="Reason:",
                           stop=("</option>",), history_shown=1, history_dropped=0, options=("option zero", "option one"),
                           continuations=("option zero", "option one")) for i in range(10)]
    answers = [0] * 10
    path = tmp_path / "teacher.jsonl"
    with pytest.raises(InterruptedError):
        distill(StoppingTeacher(fail_at=6), prompts, answers, max_new_tokens=8, log=TeacherLog(path), chunk=4)
    assert len(path.read_text().splitlines()) == 6  # each example's answers were written as they were made
    with open(path, "a") as handle:
        handle.write('{"key": "torn')  # a line cut short by the interrupt is ignored
    rerun = StoppingTeacher()
    reasoned = distill(rerun, prompts, answers, max_new_tokens=8, log=TeacherLog(path), chunk=4)
    assert (rerun.justified, rerun.predictions) == (4, 4)  # only the 4 examples not answered before
    assert [r.kept for r in reasoned] == [True] * 10
    again = StoppingTeacher(fail_at=0)  # everything is in the log now: the teacher is not asked at all
    assert distill(again, prompts, answers, max_new_tokens=8, log=TeacherLog(path)) == reasoned
    other = TeacherLog(path)
    assert len(other.answers) == 10 and json.loads(path.read_text().splitlines()[0])["reason"] == "A reason."
